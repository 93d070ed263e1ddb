"""The tour's payment webhook: Stripe-style signatures, a once-only ledger, ticket tokens.

``handler.handler`` is the Lambda entry point; ``local.serve`` runs the same code behind a
small HTTP server for the local cloud.
"""
