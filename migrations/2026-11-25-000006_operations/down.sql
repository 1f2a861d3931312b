DROP TABLE deployments;
DROP TABLE dead_letter_replays;
DROP TABLE dead_letters;
DROP TABLE processed_events;
DROP TRIGGER outbox_notify ON outbox;
DROP FUNCTION outbox_notify();
DROP TABLE outbox;
