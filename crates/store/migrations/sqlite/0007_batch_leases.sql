-- A replica leases the batch requests it runs; a lease that runs out (the replica died)
-- puts them back in the pool for any replica.
ALTER TABLE batch_requests ADD COLUMN leased_by TEXT;
ALTER TABLE batch_requests ADD COLUMN lease_until INTEGER;
