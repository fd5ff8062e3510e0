-- Server replicas share one database: the replica running a pipeline owns it under a lease it
-- renews every second; a pipeline whose owner went silent is adopted by another replica, which
-- runs it on from what the store holds. A stop asked of any replica is left here for the owner.
ALTER TABLE pipelines ADD COLUMN owner TEXT;
ALTER TABLE pipelines ADD COLUMN owner_until_ms BIGINT;
ALTER TABLE pipelines ADD COLUMN stop_reason TEXT;
