-- SQLite rebuilt its hot ACME tables WITHOUT ROWID here; PostgreSQL has no rowid,
-- so this step changes nothing.
SELECT 1
