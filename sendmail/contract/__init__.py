"""The v1 API as callers see it: what a request may hold, what an answer holds, how errors read.

Owns: the request models and their validation (:mod:`~sendmail.contract.models`), the answer
models (:mod:`~sendmail.contract.api_models`), the OpenAPI document generated from both
(:mod:`~sendmail.contract.openapi`), the error hierarchy and its envelope
``{timestamp, status, error, message, path}`` (:mod:`~sendmail.contract.errors`), the stable
words callers script against — failure codes, providers, kinds of send
(:mod:`~sendmail.contract.vocabulary`) — and the rules for addresses and one-line text that every
layer above applies the same way (:mod:`~sendmail.contract.addresses`,
:mod:`~sendmail.contract.text`), and the template language of personalised sends
(:mod:`~sendmail.contract.templates`).

May import: :mod:`sendmail.platform` (the limits come from settings). Never the engine or the
capabilities: the contract says what, they say how.
"""
