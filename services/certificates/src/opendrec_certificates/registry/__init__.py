"""The registry (issue 14): holdings with serial ranges, balances, transfer, retirement, locks, the REC inventory
and the redemption report."""
