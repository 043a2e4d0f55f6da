"""Client order ids through the gRPC API: only an identical resend gets the first result.

A different order under an id the account already used (filled, canceled or
resting) is REJECTED with DUPLICATE_CLIENT_ORDER_ID, and stays so after the
server restarts on its data directory (the idempotency table is rebuilt from
the journal, or read from the snapshot taken at a clean stop).
"""

from __future__ import annotations

from pathlib import Path

from service_support import LoopThread, start_harness

from pyexchange.api.grpc import exchange_pb2 as pb


def test_a_reused_client_order_id_is_refused_across_a_restart(tmp_path: Path) -> None:
    loop = LoopThread()
    data_dir = tmp_path / "data"
    try:
        h = start_harness(loop, data_dir, idle_tick_ms=None)
        t1 = h.client("trader-1")
        first = h.run(t1.place(1, 1, "BUY_YES", "0.30", "2", client_order_id=41))
        assert first.status == pb.RESTING and first.order_id
        again = h.run(t1.place(1, 1, "BUY_YES", "0.30", "2", client_order_id=41))
        assert (again.order_id, again.seq, again.status) == (
            first.order_id,
            first.seq,
            first.status,
        )
        seq = h.server.exchange.sequencer.next_seq
        for other in (("BUY_YES", "0.31", "2"), ("BUY_YES", "0.30", "3"), ("SELL_NO", "0.30", "2")):
            reply = h.run(t1.place(1, 1, *other, client_order_id=41))
            assert reply.status == pb.REJECTED, reply
            assert reply.reject_reason == "DUPLICATE_CLIENT_ORDER_ID" and reply.seq == 0
            assert "already used" in reply.message
        assert h.run(t1.cancel(1, first.order_id)).status == pb.CANCELED
        reused = h.run(t1.place(1, 1, "BUY_YES", "0.25", "1", client_order_id=41))  # not resting
        assert reused.reject_reason == "DUPLICATE_CLIENT_ORDER_ID"
        assert h.server.exchange.sequencer.next_seq == seq + 1  # only the cancel was journaled
        h.close()
        for snapshot_on_stop in (False, True):  # replayed from the journal, then a snapshot
            h = start_harness(loop, data_dir, idle_tick_ms=None, snapshot_on_stop=snapshot_on_stop)
            t1 = h.client("trader-1")
            reply = h.run(t1.place(1, 1, "BUY_YES", "0.32", "2", client_order_id=41))
            assert reply.reject_reason == "DUPLICATE_CLIENT_ORDER_ID"
            again = h.run(t1.place(1, 1, "BUY_YES", "0.30", "2", client_order_id=41))
            assert (again.order_id, again.seq) == (first.order_id, first.seq)
            h.close()
    finally:
        loop.close()
