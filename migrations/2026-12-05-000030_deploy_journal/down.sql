ALTER TABLE canary_pings DROP COLUMN handled_by;
DROP TABLE deploy_lock_events;
DROP TABLE deploy_lease;
DROP TABLE deployment_steps;
ALTER TABLE deployments DROP COLUMN failed_step;
ALTER TABLE deployments DROP COLUMN migrations;
ALTER TABLE deployments DROP COLUMN kind;
