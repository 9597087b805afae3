-- mail_attempts partitions older than three months: no mail waits that long in a
-- mailbox the daemon works. Dropped by the daemon at start.
SELECT DISTINCT table, partition
FROM system.parts
WHERE database = '{database}' AND active
  AND table = 'mail_attempts'
  AND partition < toString(toYYYYMM(today() - 92));
