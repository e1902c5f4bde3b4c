-- The full-text index gathers new entries in a pending list, merged into the index by the insert that overflows it:
-- at the default 4 MB that one insert (a long memory of many distinct terms, say) does seconds of work and can run
-- past the statement timeout, and every text search reads the whole list. A smaller list bounds both.
ALTER INDEX memories_search_terms_idx SET (gin_pending_list_limit = 512);
SELECT gin_clean_pending_list('memories_search_terms_idx'::regclass);
