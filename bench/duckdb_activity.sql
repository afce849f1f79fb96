-- The DuckDB side of `make bench`'s activity archive: what the token did,
-- joined back to its grant. Successful client-credentials grants (the same
-- sub-type rule as ccwatch), joined with ApiEvent rows by LoginKey, aggregated
-- per run-as user / app / UTC day: records, rows read (COUNT() reads none),
-- distinct entities. ccwatch does this and more (SessionKey, LoginHistoryId,
-- request siblings and tuple attribution, factors, scoring); the LoginKey join
-- is the part both can be checked on: DuckDB's joined records equal ccwatch's
-- `attributed(key=…)`.
WITH grants AS (
  SELECT LoginKey, substr(UserId, 1, 15) AS user15, Application
  FROM read_json('logins.jsonl', format = 'newline_delimited', columns = {
    LoginKey: 'VARCHAR', UserId: 'VARCHAR', Application: 'VARCHAR', LoginType: 'VARCHAR',
    LoginSubType: 'VARCHAR', Status: 'VARCHAR'})
  WHERE LoginType IN ('Remote Access 2.0', 'i')
    AND regexp_replace(lower(LoginSubType), '[^a-z0-9]', '', 'g') IN ('oauthclientcredentials', 'oauthclientcredential')
    AND Status IN ('Success', 'LOGIN_NO_ERROR')
),
api AS (
  SELECT LoginKey, QueriedEntities, Query, RowsProcessed,
         CAST(strptime(substr(EventDate, 1, 23), '%Y-%m-%dT%H:%M:%S.%g') AS DATE) AS day
  FROM read_json('activity.jsonl', format = 'newline_delimited', columns = {
    LoginKey: 'VARCHAR', EventDate: 'VARCHAR', QueriedEntities: 'VARCHAR', Query: 'VARCHAR', RowsProcessed: 'DOUBLE'})
  WHERE LoginKey IS NOT NULL
)
SELECT g.user15, g.Application, a.day,
       count(*) AS records,
       sum(CASE WHEN regexp_matches(a.Query, '(?i)^\s*select\s+count\(\s*\)') THEN 0 ELSE a.RowsProcessed END) AS rows,
       count(DISTINCT a.QueriedEntities) AS entities
FROM api a JOIN grants g USING (LoginKey)
GROUP BY ALL
ORDER BY 1, 2, 3
