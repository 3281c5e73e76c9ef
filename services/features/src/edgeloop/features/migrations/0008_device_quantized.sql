-- Whether a device prediction came from the version's dynamic-range quantized twin (robots
-- that declare "quantized_model" run it once the gateway has checked it) rather than its
-- float file: device/server agreement and a device's errors read differently for the two.
-- False for every served frame and for rows recorded before it was kept.
ALTER TABLE observations ADD COLUMN device_quantized boolean NOT NULL DEFAULT false;
