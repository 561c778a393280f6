-- The 100 hosts with the most documents in the deduplicated corpus, per source.
SELECT source, url_host(url) AS host, count(*) AS documents, sum(n_chars) AS chars
FROM dedup
WHERE url_host(url) IS NOT NULL
GROUP BY source, url_host(url)
ORDER BY documents DESC, host
LIMIT 100
