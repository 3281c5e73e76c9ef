-- A drift event answered by a retrain whose new version still exceeds the rule is
-- superseded by a new event about that version (issue 13); it is not "resolved" (the
-- rule was never quiet) and starts no cooldown.
ALTER TABLE drift_events DROP CONSTRAINT drift_events_state_check;
ALTER TABLE drift_events ADD CONSTRAINT drift_events_state_check
    CHECK (state IN ('open', 'resolved', 'superseded'));
