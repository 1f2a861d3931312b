-- A replayed letter that fails again is linked to the letter it came from:
-- the ingest finds the replay by the message's x-atelier-replay-id and sets
-- the replay's failed_again_as to the new letter. On the replay (not the
-- letter): one replay fails again as at most one letter, and `dlq show` reads
-- both directions from it. Nullable, no default: adding it rewrites nothing.
-- The foreign key is added NOT VALID (no scan under a lock) and validated
-- apart; the column is new and empty, so validation finds nothing to refuse.
ALTER TABLE dead_letter_replays ADD COLUMN failed_again_as bigint;
ALTER TABLE dead_letter_replays
    ADD CONSTRAINT dead_letter_replays_failed_again_as_fkey FOREIGN KEY (failed_again_as) REFERENCES dead_letters (id) ON DELETE SET NULL NOT VALID;
ALTER TABLE dead_letter_replays VALIDATE CONSTRAINT dead_letter_replays_failed_again_as_fkey;
