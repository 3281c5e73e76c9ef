-- Every committed change to what watchers follow (deployments, devices, versions, alias
-- moves) notifies channel edgeloop_registry, whoever made it: each registry instance
-- LISTENs and refreshes at once (Catalog.listen), so a change made through one instance
-- reaches the gateways watching another within a second, not at its next periodic
-- refresh. NOTIFY is delivered at commit, and a transaction's identical notifications
-- are folded into one.
CREATE FUNCTION notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('edgeloop_registry', TG_TABLE_NAME);
    RETURN NULL;
END
$$;

CREATE TRIGGER deployments_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON deployments
    FOR EACH STATEMENT EXECUTE FUNCTION notify_change();
CREATE TRIGGER devices_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON devices
    FOR EACH STATEMENT EXECUTE FUNCTION notify_change();
CREATE TRIGGER model_versions_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON model_versions
    FOR EACH STATEMENT EXECUTE FUNCTION notify_change();
CREATE TRIGGER alias_moves_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON alias_moves
    FOR EACH STATEMENT EXECUTE FUNCTION notify_change();
