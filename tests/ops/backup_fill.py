"""Fill a throwaway database through the services, and check a receipt on its restored copy,
for tests/ops/test_backup_restore.py.

    DATABASE_URL=… python -m tests.ops.backup_fill fill RESIDENTS
    DATABASE_URL=… python -m tests.ops.backup_fill check FILLED.json
    DATABASE_URL=… python -m tests.ops.backup_fill churn SECONDS

Run as its own process (production settings, the environment the test gives it) on a
migrated database: creates RESIDENTS residents, records their consent decisions (grants,
withdrawals, renewals) through `consent.services`, erases one resident (crypto-shredding:
the events stay, the key goes), signs a tree head over everything (`tree_head_sign`), then
records a few more events that no head covers yet (pending, as a live system always has).
Prints one JSON line: the receipt and the inclusion proof of one event issued before the
backup, the event counts and the signed head.

`check` (on the restored database) verifies that receipt as anyone would (signature against
the published keys, entry against leaf hash), asks the restored database for the same
event's proof against the same signed head, and checks it leads to the head's root. Prints
one JSON line with what it found.

`churn` keeps the filled residents granting and withdrawing for SECONDS (the writes a backup
taken while the service runs must cope with).
"""

from __future__ import annotations

import json
import sys
from typing import Any


def fill(residents: int) -> dict[str, object]:
    from consent.models import LedgerEvent  # noqa: PLC0415
    from consent.receipts import receipt_for_event  # noqa: PLC0415
    from consent.selectors import event_proof  # noqa: PLC0415
    from consent.services import resident_decision_record, subject_erase, tree_head_sign  # noqa: PLC0415
    from identity.services import user_create  # noqa: PLC0415

    purposes = ["personalisation-declared", "personalisation-browsing", "service-news-email"]
    users = [
        user_create(
            email=f"backup-{index}@ops.example",
            password=None,
            given_name="Résidente",
            family_name=f"Sauvegarde {index}",
            email_verified=True,
        )
        for index in range(residents)
    ]
    for round_ in range(3):  # grant, withdraw, grant again (a renewal)
        for index, user in enumerate(users):
            for code in purposes[: 1 + index % len(purposes)]:
                resident_decision_record(user=user, purpose_code=code, grant=round_ != 1)
    subject_erase(user=users[-1])
    head = tree_head_sign()
    # The receipt a resident downloaded before the backup, and its proof.
    event = LedgerEvent.objects.order_by("seq")[len(users) // 2]
    receipt = receipt_for_event(event)
    proof = event_proof(event=event, tree_head=head)
    # A live ledger always has a few events the sequencer has not integrated yet.
    for user in users[:3]:
        resident_decision_record(user=user, purpose_code=purposes[0], grant=False)
    return {
        "events": LedgerEvent.objects.count(),
        "signed_head_id": head.pk,
        "signed_size": head.tree_size,
        "signed_root": bytes(head.root_hash).hex(),
        "event_id": str(event.id),
        "event_seq": event.seq,
        "receipt": receipt,
        "proof": proof,
    }


def check(filled: dict[str, Any]) -> dict[str, object]:
    from consent import merkle  # noqa: PLC0415
    from consent.models import LedgerEvent, TreeHead  # noqa: PLC0415
    from consent.receipts import receipt_verify  # noqa: PLC0415
    from consent.selectors import event_proof  # noqa: PLC0415

    payload = receipt_verify(filled["receipt"])
    event = LedgerEvent.objects.get(id=filled["event_id"])
    original = filled["proof"]
    proof = event_proof(event=event, tree_head=TreeHead.objects.get(pk=filled["signed_head_id"]))
    leaf = merkle.leaf_hash(payload["ledger"]["entry"].encode())
    included = merkle.verify_inclusion(
        leaf,
        payload["ledger"]["leaf_index"],
        proof["tree_size"],
        [bytes.fromhex(h) for h in proof["inclusion_path"]],
        bytes.fromhex(proof["root_hash"]),
    )
    return {
        "receipt_leaf_index": payload["ledger"]["leaf_index"],
        "receipt_entry_matches_row": leaf.hex() == bytes(event.leaf_hash).hex(),
        "proof_equal": proof == original,
        "included": included,
    }


def churn(seconds: float) -> dict[str, object]:
    """Keep appending: the filled residents grant and withdraw in turn for `seconds`."""
    import time  # noqa: PLC0415

    from consent.services import resident_decision_record  # noqa: PLC0415
    from identity.models import User  # noqa: PLC0415

    users = list(User.objects.filter(email__startswith="backup-", is_active=True).order_by("id"))[:-1]
    deadline = time.monotonic() + seconds
    written = rounds = 0
    while time.monotonic() < deadline:
        for user in users:
            if resident_decision_record(user=user, purpose_code="service-news-email", grant=rounds % 2 == 0):
                written += 1
        rounds += 1
    return {"written": written}


if __name__ == "__main__":
    import django

    django.setup()
    if sys.argv[1] == "fill":
        result = fill(int(sys.argv[2]))
    elif sys.argv[1] == "churn":
        result = churn(float(sys.argv[2]))
    else:
        with open(sys.argv[2], encoding="utf-8") as source:
            result = check(json.load(source))
    print("RESULT " + json.dumps(result), flush=True)
