-- Operations (issue 4): the archive manifest and storage-health snapshots.
-- archive_manifest: one row per archived partition (kind, series, partition_key); an archive move
-- sets archived_at and clears restored_at, `admf archive restore` sets restored_at (a restored
-- partition stays hot: the retention sensor skips it until `admf archive run --include-restored`). `rows` and
-- `checksum` (admf_assets.core.archive.rows_checksum, order-independent, 16 hex) were verified on
-- the source and on the archive month file before the source was deleted.
CREATE TABLE IF NOT EXISTS archive_manifest (
    kind           VARCHAR NOT NULL,    -- bars | signals | classifiers | tables/daily_signal_summary | postgres/daily_signal_summary
    series         VARCHAR NOT NULL,    -- SPY_5m for files; the table name otherwise
    partition_key  VARCHAR NOT NULL,    -- YYYY-MM-DD trading day (Postgres month partitions: one row per day)
    source         VARCHAR NOT NULL,    -- hot file / duckdb:<table> / postgres:<partition table>
    target         VARCHAR NOT NULL,    -- archive month file (path or URL)
    rows           BIGINT NOT NULL,
    checksum       VARCHAR NOT NULL,
    archived_at    TIMESTAMP NOT NULL,  -- UTC
    run_id         VARCHAR,             -- Dagster run id (NULL from the command line)
    restored_at    TIMESTAMP,           -- UTC; NULL while archived
    PRIMARY KEY (kind, series, partition_key)
);

-- storage_health_history: one row per metric per storage_health materialization; growth per day
-- is computed against earlier snapshots. Sizes in bytes, counts in rows/files.
CREATE TABLE IF NOT EXISTS storage_health_history (
    taken_at  TIMESTAMP NOT NULL,       -- UTC
    metric    VARCHAR NOT NULL,         -- e.g. bytes.hot_parquet, rows.daily_signal_summary
    value     DOUBLE NOT NULL,
    PRIMARY KEY (taken_at, metric)
);

-- Hot plus archived daily summaries (hot rows win); replaced with the archive union by the archive
-- job / `admf archive restore` when a local archive holds summary month files.
CREATE VIEW IF NOT EXISTS daily_signal_summary_all AS SELECT * FROM daily_signal_summary;
