-- The outbox no longer NOTIFYs on insert. A transaction that notifies holds
-- a database-wide lock from its commit's start through its WAL flush, so
-- every transaction that raised an event committed one after another: under
-- load it was the main wait of POST /api/v1/sales. The relay is now woken in
-- its own process (after an API change or an applied event) and otherwise
-- polls every `amqp.outbox_poll`.
DROP TRIGGER outbox_notify ON outbox;
DROP FUNCTION outbox_notify();
