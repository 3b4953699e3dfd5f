-- admf_assets analytics warehouse (DuckDB). Applied idempotently on every connection.
-- Derived from design note 000 (SQL storage for large grid searches), with these changes:
--   * strategies are per symbol and timeframe (strategy_id = <SYM>_<tf>_<type>_<hash>);
--   * parameters are JSON plus the long table strategy_parameters (one row per parameter) so
--     sensitivity analysis is a plain GROUP BY, no JSON extraction;
--   * analytic tables reference only `runs` (never pruned), not each other: each is replaced by
--     its own asset in its own transaction, and DuckDB forbids deleting referenced rows.
-- Units: returns, drawdowns, win rates, commission and slippage totals are FRACTIONS (0.01 = 1%);
-- Sharpe and Sortino ratios are annualized with sqrt(252) from daily returns; *_bps are basis
-- points per side; durations are in bars.
--
-- Keys of the bulk-replaced tables (strategies, strategy_parameters, classifiers,
-- regime_performance, parameter_analysis, and grid_overfitting, strategy_correlations,
-- run_strategies in 010_analytics.sql) are still unique and NOT NULL, but enforced by the writer,
-- not by a PRIMARY KEY / UNIQUE constraint: admf_assets.core.warehouse.replace_rows refuses
-- duplicate or NULL keys (TABLE_KEYS) before it touches the table. DuckDB maintains a constraint
-- or CREATE INDEX with an ART index, which dominated every replace (regime_performance, 120k rows:
-- 1.0 s with the key, 0.13 s without) and serves only point lookups. warehouse.apply_schema rebuilds
-- tables created with the old constraints. Tables whose writers rely on a constraint keep it:
-- runs (ON CONFLICT), daily_signal_summary (below), archive_manifest (INSERT OR REPLACE),
-- storage_health_history (plain appends, a few rows). The REFERENCES runs(run_id) foreign keys stay:
-- measured 0-10 ms (within noise) per 15,000-row replace of strategies, nothing on the small tables.

-- The digest of the schema last applied (DDL files + migration version), one row: a connection
-- whose warehouse already holds the current digest skips the DDL (admf_assets.core.warehouse.apply_schema).
CREATE TABLE IF NOT EXISTS admf_schema (
    digest      VARCHAR NOT NULL,              -- schema_digest(): sha256 of the DDL and the migration version
    applied_at  TIMESTAMP                      -- UTC
);

CREATE TABLE IF NOT EXISTS runs (
    run_id          VARCHAR PRIMARY KEY,       -- the Dagster run id (or a uuid for CLI runs)
    created_at      TIMESTAMP,
    workflow_type   VARCHAR,                   -- grid_search
    symbols         VARCHAR[],
    start_date      DATE,
    end_date        DATE,
    total_bars      BIGINT,
    config_hash     VARCHAR,                   -- sha256[:12] of the sorted strategy hashes
    status          VARCHAR,                   -- completed
    workspace_path  VARCHAR,
    commission_bps  DOUBLE,
    slippage_bps    DOUBLE
);

-- key strategy_id: unique, enforced by the writer (see the top of this file)
CREATE TABLE IF NOT EXISTS strategies (
    strategy_id         VARCHAR NOT NULL,
    run_id              VARCHAR REFERENCES runs(run_id),
    strategy_hash       VARCHAR NOT NULL,
    strategy_type       VARCHAR NOT NULL,
    symbol              VARCHAR NOT NULL,
    timeframe           VARCHAR NOT NULL,
    parameters          JSON,
    constraints         VARCHAR,

    -- file locations (relative to the workspace root)
    signal_file         VARCHAR,
    signal_changes      BIGINT,
    compression_ratio   DOUBLE,                -- signal changes / bars (fraction)
    total_bars          BIGINT,
    start_ts            TIMESTAMPTZ,
    end_ts              TIMESTAMPTZ,

    -- performance after execution costs
    total_return        DOUBLE,
    annualized_return   DOUBLE,
    volatility          DOUBLE,                -- annualized std of daily net returns
    sharpe_ratio        DOUBLE,                -- = net_sharpe
    sortino_ratio       DOUBLE,
    max_drawdown        DOUBLE,                -- positive fraction
    max_drawdown_idx    BIGINT,                -- bar of the drawdown's trough (-1: none)
    win_rate            DOUBLE,
    profit_factor       DOUBLE,
    calmar_ratio        DOUBLE,
    exposure            DOUBLE,                -- fraction of bars with a position

    -- trade statistics (closed trades, net of costs)
    total_trades        BIGINT,
    winning_trades      BIGINT,
    losing_trades       BIGINT,
    avg_trade_return    DOUBLE,
    avg_trade_duration  DOUBLE,                -- bars
    largest_win         DOUBLE,
    largest_loss        DOUBLE,

    -- execution costs
    gross_total_return  DOUBLE,
    gross_sharpe        DOUBLE,
    net_sharpe          DOUBLE,
    total_commission    DOUBLE,                -- sum of commission charges, fraction of capital
    total_slippage      DOUBLE,
    commission_bps      DOUBLE,
    slippage_bps        DOUBLE,

    created_at          TIMESTAMP,
    processed_at        TIMESTAMP
);

-- key (strategy_id, parameter_name): unique, enforced by the writer
CREATE TABLE IF NOT EXISTS strategy_parameters (
    strategy_id      VARCHAR NOT NULL,
    strategy_type    VARCHAR NOT NULL,
    parameter_name   VARCHAR NOT NULL,
    parameter_value  DOUBLE NOT NULL
);

-- key classifier_id: unique, enforced by the writer
CREATE TABLE IF NOT EXISTS classifiers (
    classifier_id        VARCHAR NOT NULL,
    run_id               VARCHAR REFERENCES runs(run_id),
    classifier_hash      VARCHAR NOT NULL,
    classifier_type      VARCHAR NOT NULL,
    symbol               VARCHAR NOT NULL,
    timeframe            VARCHAR NOT NULL,
    parameters           JSON,
    state_file           VARCHAR,
    regime_changes       BIGINT,
    compression_ratio    DOUBLE,
    regime_counts        JSON,                  -- {regime: bars}
    avg_regime_duration  DOUBLE,                -- bars per regime spell
    regime_stability     DOUBLE,                -- 1 - regime changes / bars
    transition_matrix    JSON,                  -- {from: {to: count}}
    created_at           TIMESTAMP
);

-- key (strategy_id, classifier_id, regime): unique, enforced by the writer
CREATE TABLE IF NOT EXISTS regime_performance (
    strategy_id    VARCHAR NOT NULL,
    classifier_id  VARCHAR NOT NULL,
    regime         VARCHAR NOT NULL,
    sharpe_ratio   DOUBLE,
    total_return   DOUBLE,
    win_rate       DOUBLE,
    trade_count    BIGINT,
    avg_duration   DOUBLE                       -- bars per closed trade
);

-- key (strategy_type, parameter_name, parameter_value): unique, enforced by the writer (the
-- parameter_analysis asset's INSERT ... GROUP BY of exactly these columns; it does not go
-- through replace_rows, whose check would apply to any other writer)
CREATE TABLE IF NOT EXISTS parameter_analysis (
    run_id            VARCHAR REFERENCES runs(run_id),
    strategy_type     VARCHAR NOT NULL,
    parameter_name    VARCHAR NOT NULL,
    parameter_value   DOUBLE NOT NULL,
    avg_sharpe        DOUBLE,
    std_sharpe        DOUBLE,
    count_strategies  BIGINT,
    best_sharpe       DOUBLE
);

-- daily_signal_summary keeps its PRIMARY KEY: it is replaced by day ranges (replace_rows with
-- where="date BETWEEN ? AND ?") and also written directly by the archive restore (DELETE of some
-- days + INSERT), so the incoming rows alone do not prove table-wide uniqueness; its writes are a
-- few hundred rows per day, where the index costs nothing noticeable.
CREATE TABLE IF NOT EXISTS daily_signal_summary (
    date              DATE NOT NULL,
    symbol            VARCHAR NOT NULL,
    strategy_type     VARCHAR NOT NULL,
    strategy_count    BIGINT,
    signal_changes    BIGINT,
    trades_closed     BIGINT,
    wins              BIGINT,
    losses            BIGINT,
    net_pnl           DOUBLE,                   -- sum over strategies of the day's net return (fraction of one strategy's capital)
    avg_trade_return  DOUBLE,                   -- mean net return of trades closed that day
    PRIMARY KEY (date, symbol, strategy_type)
);
