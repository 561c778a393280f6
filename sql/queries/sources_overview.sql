-- Per source: documents, characters and tokens of the deduplicated corpus
-- (run after `tokenize`; the tokens column is empty for sources not tokenized).
SELECT d.source,
       count(*)                AS documents,
       sum(d.n_chars)          AS chars,
       sum(t.tokens)           AS tokens,
       avg(d.n_chars)          AS mean_chars
FROM dedup d
LEFT JOIN tokenize t ON t.id = d.id
GROUP BY d.source
ORDER BY documents DESC
