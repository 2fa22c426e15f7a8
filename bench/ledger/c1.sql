-- C1: PostgreSQL's own ceiling for one transfer per transaction, on the ledger's own tables:
-- two balance updates (the debit guarded by a funds check), one transfer row, two entry rows.
-- Debit id < credit id, so concurrent clients lock rows in one order and never deadlock.
\set d random(1, :naccounts - 1)
\set c random(:d + 1, :naccounts)
\set r random(1, 9000000000000000000)
BEGIN;
UPDATE ledger.ledger_account SET debits_posted = debits_posted + 1
  WHERE id = 'acc_' || lpad(:d::text, 6, '0') AND debits_pending + debits_posted + 1 <= credits_posted;
UPDATE ledger.ledger_account SET credits_posted = credits_posted + 1
  WHERE id = 'acc_' || lpad(:c::text, 6, '0');
INSERT INTO ledger.ledger_transfer (id, debit_account_id, credit_account_id, amount, posted_amount,
  currency, code, status, pending, metadata, created_at, resolved_at)
  VALUES ('c1_' || :client_id || '_' || :r, 'acc_' || lpad(:d::text, 6, '0'),
  'acc_' || lpad(:c::text, 6, '0'), 1, 1, 'USD', 0, 'posted', false, '{}', now(), now());
INSERT INTO ledger.ledger_entry (account_id, transfer_id, side, kind, amount, debits_pending,
  debits_posted, credits_pending, credits_posted, created_at)
  VALUES ('acc_' || lpad(:d::text, 6, '0'), 'c1_' || :client_id || '_' || :r, 'debit', 'posted', 1, 0, 1, 0, 0, now()),
         ('acc_' || lpad(:c::text, 6, '0'), 'c1_' || :client_id || '_' || :r, 'credit', 'posted', 1, 0, 0, 0, 1, now());
END;
