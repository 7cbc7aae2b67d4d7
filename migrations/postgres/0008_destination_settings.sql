-- Destinations as a resource (SPEC §14, §17): pause and a rate limit per destination.
-- paused_since: when the current pause began (NULL: not paused); paused_total_ms: the
-- time paused so far, ended pauses only (expiry of a delivery discounts what accrued
-- since its clock started, up to 7 days). rate_tat: the GCRA theoretical arrival time of
-- the next attempt, advanced by each claim.
ALTER TABLE destinations ADD COLUMN paused_since timestamptz;
ALTER TABLE destinations ADD COLUMN paused_total_ms bigint NOT NULL DEFAULT 0;
ALTER TABLE destinations ADD COLUMN rate_limit_per_s double precision;
ALTER TABLE destinations ADD COLUMN rate_tat timestamptz;
-- What paused_total_ms was when the job's expiry clock started.
ALTER TABLE jobs ADD COLUMN paused_base_ms bigint NOT NULL DEFAULT 0;
