-- Test data for the shipped queries: an inventory of 10,000 generated domains
-- (gen-00000.example .. gen-09999.example) with reports, DNS snapshots and status history,
-- plus example.com (listed), removed.example (listed, then removed) and new.example (listed
-- after the last DNS check: not checked yet). Loaded by
-- ingest/tests/queries.rs on ClickHouse 18.16 (after the test reports are imported) and
-- by deploy/dev/extract_dashboard_sql.py into the chdb check; every statement runs on both.
-- Tables are named `dmarc.`: the loaders put their database there.
--
-- What a generated domain n publishes (snapshots 30, 15 and 3 days ago):
--   p: reject / quarantine / none for n % 3 = 0 / 1 / 2; no DMARC record if n % 100 = 99;
--      n % 1000 = 7: p=reject, then p=none in the newest snapshot (gen-00007.example);
--   sp=none if n % 4 = 0 (its subdomain news.<domain> sends failing mail);
--   SPF: n % 13 DNS lookups (11 and 12: the error spf-too-many-lookups, e.g.
--      gen-00011.example); ~all if n % 4 = 1, else -all; n % 1000 = 8: ~all, then -all;
--   DKIM: a 1024-bit key if n % 9 = 4 (warning dkim-weak-key), no selector if n % 20 = 19;
--   rua without the team's address if n % 10 = 3; no MX if n % 50 = 25; parked (null MX)
--      if n % 50 = 49; MTA-STS and TLS-RPT only for even n.
-- Owners: 'Owner 0' .. 'Owner 39' (n % 40); groups: five, by n % 5.
-- Status: one computation per domain per day for 14 days (from the snapshot in force),
-- two today for every tenth domain.

INSERT INTO dmarc.domain_inventory (domain, owner, group_name, parked, contact, removed, synced_at)
SELECT concat('gen-', substring(toString(100000 + number), 2), '.example') AS domain,
       concat('Owner ', toString(number % 40)) AS owner,
       arrayElement(['Councils', 'Schools', 'Health', 'Housing', 'Transport'], number % 5 + 1) AS group_name,
       number % 50 = 49 AS parked,
       concat('it@', domain) AS contact,
       0 AS removed,
       toDateTime(intDiv(toUInt32(now()), 86400) * 86400 - 40 * 86400) AS synced_at
FROM numbers(10000);

INSERT INTO dmarc.domain_inventory (domain, owner, group_name, parked, contact, removed, synced_at)
SELECT arrayJoin(['example.com', 'removed.example']) AS domain,
       'Example Owner' AS owner,
       'Examples' AS group_name,
       0 AS parked,
       'it@example.com' AS contact,
       0 AS removed,
       toDateTime(intDiv(toUInt32(now()), 86400) * 86400 - 40 * 86400) AS synced_at;

INSERT INTO dmarc.domain_inventory (domain, owner, group_name, parked, contact, removed, synced_at)
SELECT 'removed.example' AS domain,
       'Example Owner' AS owner,
       'Examples' AS group_name,
       0 AS parked,
       'it@example.com' AS contact,
       1 AS removed,
       toDateTime(intDiv(toUInt32(now()), 86400) * 86400 - 5 * 86400) AS synced_at;

-- Reports: one per generated domain yesterday and 8 days ago, from one reporter.
INSERT INTO dmarc.reports (policy_domain, date_begin, date_end, org_name, report_id, email,
                           published_adkim, published_aspf, published_p, published_sp,
                           published_pct, record_count, message_count, source, ingest_id,
                           ingested_at, parser_version)
SELECT domain AS policy_domain,
       begin AS date_begin,
       toDateTime(toUInt32(begin) + 86399) AS date_end,
       'Generated Reporter' AS org_name,
       concat('gen-', toString(n), '-', toString(days_ago)) AS report_id,
       'dmarc@reporter.example' AS email,
       'r' AS published_adkim,
       'r' AS published_aspf,
       p AS published_p,
       if(n % 4 = 0, 'none', '') AS published_sp,
       100 AS published_pct,
       3 AS record_count,
       (n % 97 + 1) + (n % 7 + 1) + (n % 5 + 1) AS message_count,
       'generated_domains.sql' AS source,
       toUUID('00000000-0000-0000-0000-000000000000') AS ingest_id,
       now() AS ingested_at,
       'generated' AS parser_version
FROM
(
    SELECT number % 10000 AS n,
           if(number < 10000, 1, 8) AS days_ago,
           concat('gen-', substring(toString(100000 + n), 2), '.example') AS domain,
           toDateTime(intDiv(toUInt32(now()), 86400) * 86400 - days_ago * 86400) AS begin,
           multiIf(n % 100 = 99, '', n % 1000 = 7, if(days_ago = 1, 'none', 'reject'),
                   arrayElement(['reject', 'quarantine', 'none'], n % 3 + 1)) AS p
    FROM numbers(20000)
);

-- Their records: the domain's own aligned mail, a spoofer, and (failing) mail of the
-- subdomain news.<domain> through an ESP signing with its own domain.
INSERT INTO dmarc.records (policy_domain, date_begin, date_end, org_name, report_id,
                           record_index, source_ip, source_ip_v6, message_count, disposition,
                           policy_dkim, policy_spf, header_from, envelope_from, dkim_domains,
                           dkim_selectors, dkim_results, spf_domains, spf_scopes, spf_results,
                           published_p, published_sp, published_adkim, published_aspf,
                           ingest_id, ingested_at, header_from_org, envelope_from_org,
                           dkim_domains_org, spf_domains_org, sender_org, dkim_aligned,
                           spf_aligned)
SELECT domain AS policy_domain,
       begin AS date_begin,
       toDateTime(toUInt32(begin) + 86399) AS date_end,
       'Generated Reporter' AS org_name,
       concat('gen-', toString(n), '-', toString(days_ago)) AS report_id,
       r AS record_index,
       arrayElement([concat('198.18.', toString(intDiv(n, 256)), '.', toString(n % 256)),
                     concat('203.0.113.', toString(n % 250)),
                     concat('198.19.', toString(intDiv(n, 256)), '.', toString(n % 256))], r + 1) AS source_ip,
       IPv6StringToNum(concat('::ffff:', source_ip)) AS source_ip_v6,
       arrayElement([n % 97 + 1, n % 7 + 1, n % 5 + 1], r + 1) AS message_count,
       if(r = 0 OR p IN ('', 'none'), 'none', p) AS disposition,
       if(r = 0, 'pass', 'fail') AS policy_dkim,
       if(r = 0, 'pass', 'fail') AS policy_spf,
       if(r = 2, concat('news.', domain), domain) AS header_from,
       arrayElement([domain, domain, 'bounce.esp.example'], r + 1) AS envelope_from,
       arrayElement([[domain], emptyArrayString(), ['esp.example']], r + 1) AS dkim_domains,
       arrayElement([['s1'], emptyArrayString(), ['esp1']], r + 1) AS dkim_selectors,
       arrayElement([['pass'], emptyArrayString(), ['pass']], r + 1) AS dkim_results,
       [envelope_from] AS spf_domains,
       ['mfrom'] AS spf_scopes,
       [if(r = 0, 'pass', 'fail')] AS spf_results,
       p AS published_p,
       if(n % 4 = 0, 'none', '') AS published_sp,
       'r' AS published_adkim,
       'r' AS published_aspf,
       toUUID('00000000-0000-0000-0000-000000000000') AS ingest_id,
       now() AS ingested_at,
       domain AS header_from_org,
       if(r = 2, 'esp.example', domain) AS envelope_from_org,
       dkim_domains AS dkim_domains_org,
       [envelope_from_org] AS spf_domains_org,
       arrayElement([domain, 'spoofer.example', 'esp.example'], r + 1) AS sender_org,
       r = 0 AS dkim_aligned,
       r = 0 AS spf_aligned
FROM
(
    SELECT number % 10000 AS n,
           if(number < 10000, 1, 8) AS days_ago,
           concat('gen-', substring(toString(100000 + n), 2), '.example') AS domain,
           toDateTime(intDiv(toUInt32(now()), 86400) * 86400 - days_ago * 86400) AS begin,
           multiIf(n % 100 = 99, '', n % 1000 = 7, if(days_ago = 1, 'none', 'reject'),
                   arrayElement(['reject', 'quarantine', 'none'], n % 3 + 1)) AS p
    FROM numbers(20000)
)
ARRAY JOIN [0, 1, 2] AS r;

-- DNS snapshots, 30, 15 and 3 days ago: every listed domain, and the policy domains of
-- reports that are not listed (in_inventory = 0).
INSERT INTO dmarc.dns_checks (checked_at, domain, in_inventory, failed_lookups, dmarc_name,
                              dmarc_inherited, dmarc_records, dmarc_p, dmarc_sp, dmarc_np,
                              dmarc_pct, dmarc_adkim, dmarc_aspf, dmarc_fo, dmarc_rua, dmarc_ruf,
                              dmarc_rua_reaches_team, spf_records, spf_lookups,
                              spf_void_lookups, spf_all, mx_hosts, null_mx, dkim_selectors,
                              dkim_records, dkim_key_types, dkim_key_bits, mta_sts_record,
                              tls_rpt_record, `findings.area`, `findings.severity`,
                              `findings.code`, `findings.text`, dmarc_status, spf_status,
                              dkim_status, mx_status)
SELECT checked_at, domain, in_inventory, 0 AS failed_lookups,
       if(p = '', '', concat('_dmarc.', domain)) AS dmarc_name,
       0 AS dmarc_inherited,
       if(p = '', emptyArrayString(),
          [concat('v=DMARC1; p=', p, if(sp = '', '', concat('; sp=', sp)), '; rua=mailto:',
                  if(reaches_team, 'dmarc@team.example', concat('dmarc@', domain)))]) AS dmarc_records,
       p AS dmarc_p, sp AS dmarc_sp, '' AS dmarc_np,
       if(p = '', 0, 100) AS dmarc_pct,
       if(p = '', '', 'r') AS dmarc_adkim,
       if(p = '', '', 'r') AS dmarc_aspf,
       '' AS dmarc_fo,
       if(p = '', emptyArrayString(),
          [if(reaches_team, 'mailto:dmarc@team.example', concat('mailto:dmarc@', domain))]) AS dmarc_rua,
       emptyArrayString() AS dmarc_ruf,
       reaches_team AS dmarc_rua_reaches_team,
       [concat('v=spf1 include:_spf.provider.example ', spf_all)] AS spf_records,
       lookups AS spf_lookups, 0 AS spf_void_lookups, spf_all,
       if(parked OR n % 50 = 25, emptyArrayString(),
          [concat('mx1.', domain), concat('mx2.', domain)]) AS mx_hosts,
       parked AS null_mx,
       if(n % 20 = 19, emptyArrayString(), ['s1']) AS dkim_selectors,
       if(n % 20 = 19, emptyArrayString(), ['v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA']) AS dkim_records,
       if(n % 20 = 19, emptyArrayString(), ['rsa']) AS dkim_key_types,
       if(n % 20 = 19, CAST([] AS Array(UInt16)), [toUInt16(if(weak, 1024, 2048))]) AS dkim_key_bits,
       if(n % 2 = 0, 'v=STSv1; id=20240101', '') AS mta_sts_record,
       if(n % 2 = 0, 'v=TLSRPTv1; rua=mailto:tlsrpt@team.example', '') AS tls_rpt_record,
       arrayFilter((x, m) -> m = 1, ['dmarc', 'dmarc', 'dmarc', 'spf', 'spf', 'dkim', 'mx', 'mta_sts'], mask) AS fa,
       arrayFilter((x, m) -> m = 1, ['error', 'warning', 'warning', 'error', 'warning', 'warning', 'warning', 'info'], mask) AS fs,
       arrayFilter((x, m) -> m = 1, ['dmarc-missing', 'dmarc-p-none', 'dmarc-rua-not-team',
                                    'spf-too-many-lookups', 'spf-softfail-all', 'dkim-weak-key',
                                    'mx-missing', 'mta-sts-missing'], mask) AS fc,
       arrayFilter((x, m) -> m = 1, [concat('no DMARC record at _dmarc.', domain),
                                    'p=none: mail failing DMARC is delivered',
                                    'rua does not include the team address',
                                    concat('SPF needs ', toString(lookups), ' DNS lookups; the limit is 10'),
                                    'SPF ends in ~all (softfail)',
                                    'DKIM selector s1 has a 1024-bit RSA key',
                                    'no MX record (and no null MX)',
                                    'no MTA-STS record'], mask) AS ft,
       multiIf(has(arrayFilter((s, a) -> a = 'dmarc', fs, fa), 'error'), 'error',
               has(arrayFilter((s, a) -> a = 'dmarc', fs, fa), 'warning'), 'warning', 'ok') AS dmarc_status,
       multiIf(has(arrayFilter((s, a) -> a = 'spf', fs, fa), 'error'), 'error',
               has(arrayFilter((s, a) -> a = 'spf', fs, fa), 'warning'), 'warning', 'ok') AS spf_status,
       multiIf(n % 20 = 19, 'none', weak, 'warning', 'ok') AS dkim_status,
       if(has(fa, 'mx'), 'warning', 'ok') AS mx_status
FROM
(
    SELECT domain, in_inventory, parked, n, checked_at, p, sp, reaches_team, lookups, spf_all, weak,
           [p = '', p = 'none', p != '' AND NOT reaches_team, lookups > 10, spf_all = '~all',
            weak, n % 50 = 25 AND NOT parked, n % 2 = 1] AS mask
    FROM
    (
        SELECT domain, in_inventory, parked, n,
               toDateTime(toUInt32(now()) - age_days * 86400) AS checked_at,
               multiIf(NOT startsWith(domain, 'gen-'), 'none', n % 100 = 99, '',
                       n % 1000 = 7, if(age_days = 3, 'none', 'reject'),
                       arrayElement(['reject', 'quarantine', 'none'], n % 3 + 1)) AS p,
               if(p != '' AND n % 4 = 0, 'none', '') AS sp,
               n % 10 != 3 AS reaches_team,
               toUInt16(n % 13) AS lookups,
               multiIf(n % 1000 = 8, if(age_days = 3, '-all', '~all'), n % 4 = 1, '~all', '-all') AS spf_all,
               n % 9 = 4 AS weak
        FROM
        (
            SELECT domain, in_inventory, parked,
                   if(startsWith(domain, 'gen-'), toUInt64(toUInt32OrZero(substring(domain, 5, 5))),
                      cityHash64(domain) % 10000) AS n
            FROM
            (
                SELECT domain, toUInt8(1) AS in_inventory, parked
                FROM dmarc.domains
                WHERE removed = 0
                UNION ALL
                SELECT policy_domain AS domain, toUInt8(0) AS in_inventory, toUInt8(0) AS parked
                FROM dmarc.reports
                WHERE policy_domain NOT IN (SELECT domain FROM dmarc.domains WHERE removed = 0)
                GROUP BY policy_domain
            )
        )
        ARRAY JOIN [30, 15, 3] AS age_days
    )
);

-- Status: one computation per listed domain per day for the last 14 days, from the
-- snapshot in force (15 days old: days 4..13 ago; 3 days old: days 0..3), a second one
-- today for every tenth domain (by hash); volume from the last 30 days of records_daily.
INSERT INTO dmarc.domain_status_history (computed_at, domain, owner, group_name, status,
                                         reasons, dmarc_status, spf_status, dkim_status,
                                         mx_status, policy, parked, parked_like, messages,
                                         dmarc_pass, checked_at)
SELECT toDateTime(toUInt32(now()) - days_ago * 86400 - 60 + extra * 30) AS computed_at,
       domain, owner, group_name,
       multiIf(has(severities, 'error') OR dmarc_p IN ('', 'none'), 'red',
               has(severities, 'warning') OR dmarc_p = 'quarantine', 'amber', 'green') AS status,
       arrayConcat(arrayFilter((t, s) -> s != 'info', texts, severities),
                   if(dmarc_p = 'quarantine', ['p=quarantine, not yet p=reject'], emptyArrayString())) AS reasons,
       dmarc_status, spf_status, dkim_status, mx_status,
       dmarc_p AS policy, parked,
       recent_messages = 0 AS parked_like,
       recent_messages AS messages,
       recent_dmarc_pass AS dmarc_pass,
       checked_at
FROM
(
    SELECT *
    FROM
    (
        SELECT domain, checked_at, dmarc_p, dmarc_status, spf_status, dkim_status, mx_status,
               `findings.severity` AS severities, `findings.text` AS texts,
               arrayJoin(multiIf(dateDiff('day', checked_at, now()) = 15, arrayFilter(x -> x >= 4, range(14)),
                                 dateDiff('day', checked_at, now()) = 3, range(4),
                                 CAST([] AS Array(UInt8)))) AS days_ago,
               arrayJoin(if(days_ago = 0 AND cityHash64(domain) % 10 = 0, [0, 1], [0])) AS extra
        FROM dmarc.dns_checks
        WHERE in_inventory = 1
    ) AS snapshots
    ANY LEFT JOIN
    (
        SELECT domain, owner, group_name, parked
        FROM dmarc.domains
        WHERE removed = 0
    ) AS inventory USING domain
) AS judged
ANY LEFT JOIN
(
    SELECT policy_domain AS domain,
           sum(messages) AS recent_messages,
           sumIf(messages, dmarc_pass = 1) AS recent_dmarc_pass
    FROM dmarc.records_daily
    WHERE day >= today() - 30
    GROUP BY policy_domain
) AS volume USING domain;

-- Alerts: spf_over_limit open since the 15-day-old snapshot for every generated domain
-- whose SPF needs 11 lookups (n % 13 = 11: every owner and group has some, e.g.
-- gen-00011.example, Owner 11's), seen again an hour ago; and one resolved.
INSERT INTO dmarc.alert_history (observed_at, rule, domain, key, state, first_seen, last_seen,
                                 severity, summary, evidence_names, evidence_values)
SELECT now() - 3600 AS observed_at, 'spf_over_limit' AS rule, domain, '' AS key,
       'open' AS state, now() - 15 * 86400 AS first_seen, now() - 3600 AS last_seen,
       'error' AS severity,
       concat(domain, ': SPF needs 11 DNS lookups (limit 10): receivers fail it') AS summary,
       ['lookups'] AS evidence_names, [11.] AS evidence_values
FROM dmarc.domains
WHERE removed = 0 AND domain LIKE 'gen-%' AND toUInt32OrZero(substring(domain, 5, 5)) % 13 = 11;

INSERT INTO dmarc.alert_history (observed_at, rule, domain, key, state, first_seen, last_seen,
                                 severity, summary, evidence_names, evidence_values)
SELECT now() - 86400 AS observed_at, 'dmarc_downgraded' AS rule,
       'gen-00008.example' AS domain, '' AS key, 'resolved' AS state,
       now() - 10 * 86400 AS first_seen, now() - 2 * 86400 AS last_seen, 'error' AS severity,
       'gen-00008.example: DMARC policy lowered: p=reject became p=none within 30 days' AS summary,
       emptyArrayString() AS evidence_names, CAST([] AS Array(Float64)) AS evidence_values;

-- A domain listed after the last DNS check: red, "not checked yet" (owner 11's, a school).
INSERT INTO dmarc.domain_inventory (domain, owner, group_name, parked, contact, removed, synced_at)
SELECT 'new.example' AS domain,
       'Owner 11' AS owner,
       'Schools' AS group_name,
       0 AS parked,
       'it@example.com' AS contact,
       0 AS removed,
       now() AS synced_at;
