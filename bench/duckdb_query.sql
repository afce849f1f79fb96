-- The DuckDB side of `make bench`: the same question ccwatch answers, as one
-- query over the same generated archive. Successful client-credentials grants
-- (the same normalised sub-type rule), joined with each run-as user's privileges
-- (inventory) and its profile's login IP ranges (audit trail), aggregated per
-- user / app / source IP / UTC day.
WITH logins AS (
  SELECT * FROM read_json('logins.jsonl', format = 'newline_delimited', columns = {
    EventIdentifier: 'VARCHAR', EventDate: 'VARCHAR', UserId: 'VARCHAR', Username: 'VARCHAR',
    Application: 'VARCHAR', LoginType: 'VARCHAR', LoginSubType: 'VARCHAR', SourceIp: 'VARCHAR', Status: 'VARCHAR'})
),
grants AS (
  SELECT substr(UserId, 1, 15) AS user15, Username, Application, SourceIp, EventIdentifier,
         CAST(strptime(substr(EventDate, 1, 23), '%Y-%m-%dT%H:%M:%S.%g') AS TIMESTAMP) AS ts
  FROM logins
  WHERE LoginType IN ('Remote Access 2.0', 'i')
    AND regexp_replace(lower(LoginSubType), '[^a-z0-9]', '', 'g') IN ('oauthclientcredentials', 'oauthclientcredential')
    AND Status IN ('Success', 'LOGIN_NO_ERROR')
),
psa AS (SELECT unnest(result.records) AS r FROM read_json('psa.json')),
privileged AS (
  SELECT substr(r.AssigneeId, 1, 15) AS user15,
         bool_or(r.PermissionSet.PermissionsModifyAllData OR r.PermissionSet.PermissionsViewAllData
                 OR r.PermissionSet.PermissionsManageUsers OR r.PermissionSet.PermissionsCustomizeApplication
                 OR r.PermissionSet.PermissionsAuthorApex) AS privileged
  FROM psa GROUP BY 1
),
users AS (
  SELECT substr(u.Id, 1, 15) AS user15, u.Profile.Name AS profile
  FROM (SELECT unnest(records) AS u FROM read_json('users.json'))
),
ranges AS (
  SELECT regexp_extract(Display, '^Added Login Ip Range to (?:Custom: |Standard: )?(.*) from (\S+) to (\S+)$', ['profile', 'lo', 'hi']) AS m
  FROM read_json('audit.jsonl', format = 'newline_delimited', columns = {Action: 'VARCHAR', Display: 'VARCHAR'})
  WHERE Action = 'loginIpRange'
),
ranges_num AS (
  SELECT m.profile AS profile,
         (split_part(m.lo, '.', 1)::BIGINT << 24) + (split_part(m.lo, '.', 2)::BIGINT << 16) + (split_part(m.lo, '.', 3)::BIGINT << 8) + split_part(m.lo, '.', 4)::BIGINT AS lo,
         (split_part(m.hi, '.', 1)::BIGINT << 24) + (split_part(m.hi, '.', 2)::BIGINT << 16) + (split_part(m.hi, '.', 3)::BIGINT << 8) + split_part(m.hi, '.', 4)::BIGINT AS hi
  FROM ranges
),
scored AS (
  SELECT g.*, coalesce(p.privileged, false) AS privileged, u.profile,
         (split_part(g.SourceIp, '.', 1)::BIGINT << 24) + (split_part(g.SourceIp, '.', 2)::BIGINT << 16)
           + (split_part(g.SourceIp, '.', 3)::BIGINT << 8) + split_part(g.SourceIp, '.', 4)::BIGINT AS ipnum
  FROM grants g LEFT JOIN privileged p USING (user15) LEFT JOIN users u USING (user15)
)
SELECT s.user15, s.Application, s.SourceIp, CAST(s.ts AS DATE) AS day,
       count(*) AS grants, min(s.ts) AS first_seen, max(s.ts) AS last_seen,
       bool_or(s.privileged) AS privileged,
       bool_or(r.profile IS NOT NULL) AS inside_profile_range
FROM scored s LEFT JOIN ranges_num r ON r.profile = s.profile AND s.ipnum BETWEEN r.lo AND r.hi
GROUP BY ALL
ORDER BY 1, 2, 3, 4
