"""Payouts to other banks: beneficiary validation, payout instructions sent to a partner
bank as ISO 20022 pacs.008 and their pacs.002 statuses (answer, signed callback, poll)."""
