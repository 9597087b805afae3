-- Attempts so far at the mails of one mailbox, by UID ({mailbox} and the UIDs are filled
-- in by the daemon, the mailbox as an escaped string literal); read before each round.
SELECT uid, toUInt32(count()) AS attempts
FROM {database}.mail_attempts
WHERE mailbox = {mailbox} AND uid_validity = {uid_validity}
  AND uid >= {uid_min} AND uid <= {uid_max}
GROUP BY uid;
