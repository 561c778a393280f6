-- The `tokenize` stage's query, run once per input Parquet file.
-- `documents` is that file (id, source, text); `tokenize` is the pipeline's
-- tokenizer as a UDF, encoding each batch in parallel (ids without `</s>`:
-- the shard writer appends it). The stage routes each row to its source's
-- train or validation shard.
SELECT id, source, tokenize(text) AS tokens
FROM documents
