-- Per source: training tokens in the shards against the mixture's target.
-- `proportion` is the [mixture] weight renormalized over the sources that
-- have tokens (as the trainer's reader does); `epochs` is how many times a
-- budget of all the training tokens goes through the source at that
-- proportion (`llamaflow mixture --budget-tokens N` plans other budgets).
WITH tokens AS (
    SELECT source, sum(tokens) AS tokens, sum(documents) AS documents
    FROM tokenize__shards
    WHERE split = 'train'
    GROUP BY source
),
planned AS (
    SELECT m.source, m.weight / sum(m.weight) OVER () AS proportion
    FROM mixture m
    JOIN tokens t ON t.source = m.source
    WHERE m.weight > 0
)
SELECT t.source,
       t.documents,
       t.tokens,
       t.tokens * 1.0 / sum(t.tokens) OVER ()                 AS share_of_tokens,
       p.proportion,
       p.proportion * (SELECT sum(tokens) FROM tokens) / t.tokens AS epochs
FROM tokens t
LEFT JOIN planned p ON p.source = t.source
ORDER BY t.tokens DESC
