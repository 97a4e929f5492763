-- SQLite rebuilt its hot ACME tables here to keep rows in their primary key's b-tree;
-- PostgreSQL stores tables its own way, so this step changes nothing.
SELECT 1
