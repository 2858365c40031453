-- Every committed batch of resource changes bumps this counter, so servers sharing the database
-- know when to drop their read caches.
INSERT INTO counters (name, value) VALUES ('resources', 0);
