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

CREATE TABLE IF NOT EXISTS strategies (
    strategy_id         VARCHAR PRIMARY KEY,
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

CREATE INDEX IF NOT EXISTS idx_strategies_performance ON strategies(sharpe_ratio, max_drawdown);
CREATE INDEX IF NOT EXISTS idx_strategies_type ON strategies(strategy_type, symbol);

CREATE TABLE IF NOT EXISTS strategy_parameters (
    strategy_id      VARCHAR NOT NULL,
    strategy_type    VARCHAR NOT NULL,
    parameter_name   VARCHAR NOT NULL,
    parameter_value  DOUBLE NOT NULL,
    PRIMARY KEY (strategy_id, parameter_name)
);

CREATE TABLE IF NOT EXISTS classifiers (
    classifier_id        VARCHAR PRIMARY KEY,
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

CREATE TABLE IF NOT EXISTS regime_performance (
    strategy_id    VARCHAR NOT NULL,
    classifier_id  VARCHAR NOT NULL,
    regime         VARCHAR NOT NULL,
    sharpe_ratio   DOUBLE,
    total_return   DOUBLE,
    win_rate       DOUBLE,
    trade_count    BIGINT,
    avg_duration   DOUBLE,                      -- bars per closed trade
    PRIMARY KEY (strategy_id, classifier_id, regime)
);

CREATE TABLE IF NOT EXISTS parameter_analysis (
    run_id            VARCHAR REFERENCES runs(run_id),
    strategy_type     VARCHAR NOT NULL,
    parameter_name    VARCHAR NOT NULL,
    parameter_value   DOUBLE NOT NULL,
    avg_sharpe        DOUBLE,
    std_sharpe        DOUBLE,
    count_strategies  BIGINT,
    best_sharpe       DOUBLE,
    UNIQUE (strategy_type, parameter_name, parameter_value)
);

CREATE INDEX IF NOT EXISTS idx_param_analysis ON parameter_analysis(strategy_type, parameter_name);

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
