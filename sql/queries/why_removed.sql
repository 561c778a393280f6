-- Why documents were removed by `dedup`: each removed id, the rule, and the
-- document kept in its place (its source and URL).
SELECT r.id, r.rule, r.similarity, r.kept_id, k.source AS kept_source, k.url AS kept_url
FROM dedup__removed r
LEFT JOIN dedup k ON k.id = r.kept_id
ORDER BY r.rule, r.id
