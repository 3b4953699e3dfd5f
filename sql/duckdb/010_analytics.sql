-- Researcher analytics (issue 5): overfitting-aware ranking, regime-aware scores, correlations
-- and the per-run strategy registry behind `admf analytics duplicates`. Applied after
-- 000_core.sql on every connection; ALTER ... ADD COLUMN IF NOT EXISTS upgrades warehouses
-- created before these columns existed (the asset fills them at its next materialization).
-- Formulas and sources: docs/analytics.md.

-- strategies: Deflated Sharpe Ratio (Bailey & Lopez de Prado 2014) within the strategy's grid
ALTER TABLE strategies ADD COLUMN IF NOT EXISTS grid_id VARCHAR;                 -- <SYM>_<tf>_<config_hash of the series' grid>
ALTER TABLE strategies ADD COLUMN IF NOT EXISTS deflated_sharpe_ratio DOUBLE;    -- probability in [0, 1] that the true Sharpe > SR0
ALTER TABLE strategies ADD COLUMN IF NOT EXISTS return_skewness DOUBLE;          -- of daily net returns
ALTER TABLE strategies ADD COLUMN IF NOT EXISTS return_kurtosis DOUBLE;          -- non-excess (normal = 3), daily net returns
ALTER TABLE strategies ADD COLUMN IF NOT EXISTS return_days BIGINT;              -- T, daily observations

-- regime_performance: regime-aware score of the (strategy, classifier) pair, same value on each regime row
ALTER TABLE regime_performance ADD COLUMN IF NOT EXISTS regime_weight DOUBLE;       -- trades entered in the regime / trades of the pair
ALTER TABLE regime_performance ADD COLUMN IF NOT EXISTS regime_aware_score DOUBLE;  -- see docs/analytics.md

-- Probability of Backtest Overfitting by CSCV (Bailey, Borwein, Lopez de Prado & Zhu 2015), one row per grid
-- (a grid = the strategies of one run evaluated on one symbol and timeframe).
-- Key grid_id: unique, enforced by the writer (no PRIMARY KEY, see 000_core.sql).
CREATE TABLE IF NOT EXISTS grid_overfitting (
    grid_id                  VARCHAR NOT NULL,
    run_id                   VARCHAR,
    symbol                   VARCHAR NOT NULL,
    timeframe                VARCHAR NOT NULL,
    config_hash              VARCHAR NOT NULL,  -- sha256[:12] of the sorted strategy hashes of the grid
    n_strategies             BIGINT,            -- strategies of the grid
    n_trials                 BIGINT,            -- strategies with a defined Sharpe ratio (DSR's N; CSCV's N)
    n_obs                    BIGINT,            -- daily observations (T)
    n_blocks                 BIGINT,            -- CSCV blocks S (NULL when T < 4)
    n_splits                 BIGINT,            -- C(S, S/2)
    pbo                      DOUBLE,            -- probability of backtest overfitting, [0, 1]
    performance_degradation  DOUBLE,            -- slope of OOS Sharpe on IS Sharpe of the IS-best (per day)
    expected_max_sharpe      DOUBLE,            -- SR0, annualized (sqrt(252))
    sharpe_variance          DOUBLE,            -- V[SR] of the trials, annualized
    best_strategy_id         VARCHAR,
    best_sharpe              DOUBLE,
    best_deflated_sharpe     DOUBLE,
    created_at               TIMESTAMP
);

-- Pearson correlations of the daily net returns of the top N strategies by Sharpe ratio
-- (asset strategy_correlations; each pair once, strategy_id_a < strategy_id_b).
-- Key (strategy_id_a, strategy_id_b): unique, enforced by the writer (no PRIMARY KEY, see 000_core.sql).
CREATE TABLE IF NOT EXISTS strategy_correlations (
    strategy_id_a  VARCHAR NOT NULL,
    strategy_id_b  VARCHAR NOT NULL,
    rank_a         BIGINT NOT NULL,             -- 1 = best Sharpe ratio
    rank_b         BIGINT NOT NULL,
    correlation    DOUBLE,                      -- NULL when a series is constant on the common days
    n_days         BIGINT NOT NULL,             -- common trading days
    run_id         VARCHAR
);

-- Strategy hashes kept per run: `strategies` is replaced at each materialization, this table
-- keeps every run's rows (replaced only for the same run id) for cross-run queries (seed 001).
-- Key (run_id, strategy_id): unique, enforced by the writer: replace_rows(where="run_id = ?")
-- checks the incoming rows among themselves and against the rows the WHERE keeps (no PRIMARY KEY
-- and no index on strategy_hash: both grew the cost of every run's insert, see 000_core.sql).
CREATE TABLE IF NOT EXISTS run_strategies (
    run_id         VARCHAR NOT NULL,
    strategy_id    VARCHAR NOT NULL,
    strategy_hash  VARCHAR NOT NULL,
    strategy_type  VARCHAR NOT NULL,
    symbol         VARCHAR NOT NULL,
    timeframe      VARCHAR NOT NULL,
    grid_id        VARCHAR NOT NULL,               -- <SYM>_<tf>_<config_hash>
    config_hash    VARCHAR NOT NULL,               -- grid content: sha256[:12] of the sorted strategy hashes of the series
    parameters     JSON,
    sharpe_ratio   DOUBLE,
    total_trades   BIGINT,
    recorded_at    TIMESTAMP
);
