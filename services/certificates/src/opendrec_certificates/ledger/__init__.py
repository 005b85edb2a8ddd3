"""The ledger anyone can verify (issue 14): hash-chained entries of every certificate's issuance and lifecycle.

domain.py (pure: canonical encoding, hashes, chain check), store.py (SQL), services.py (use cases: `append`, the
export, a certificate's proof), api.py (routes), verify.py (the stdlib-only verifier CLI for a third party).
"""
