"""Production shape on one machine: 2 uvicorn processes + 2 workers against PostgreSQL.

Nothing is sent twice, every scheduled job runs once, the conversation is consistent whichever
process takes the next message, /metrics adds up across processes, and no process logs PHI.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import httpx
import pytest
from twilio.request_validator import RequestValidator

from status import demo
from tests.channels.test_observability import assert_no_phi
from tests.fakes.server import unused_base_url
from tests.harness import API_KEY, TWILIO_NUMBER

on_postgres = pytest.mark.parametrize(
    "database", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
MARIA, LUIS = "+15550100001", "+15550100004"


class Cluster:
    def __init__(self, database, fake_twilio, tmp_path):
        self.base = unused_base_url()
        port = self.base.rsplit(":", 1)[1]
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "TELEGRAM_"))
        }
        self.env.update(
            DATABASE_URL=database.url, API_KEY=API_KEY, PUBLIC_BASE_URL=self.base,
            SECRET_KEY="cluster-secret", TWILIO_ACCOUNT_SID=fake_twilio.account_sid,
            TWILIO_AUTH_TOKEN=fake_twilio.auth_token, TWILIO_API_BASE=fake_twilio.base_url,
            TWILIO_FROM_NUMBER=TWILIO_NUMBER, TWILIO_MESSAGES_PER_SECOND="0",
            NOTIFY_DELAY_SECONDS="0", QUIET_HOURS="off", SCHEDULER_INTERVAL_SECONDS="1",
            DAILY_MESSAGE_CAP="10", LOG_FORMAT="json", LOG_LEVEL="DEBUG",
            PROMETHEUS_MULTIPROC_DIR=str(tmp_path),
        )  # fmt: skip
        cli = [sys.executable, "-m", "channels.cli"]
        web = [
            *cli,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            port,
            "--no-workers",
            "--workers",
            "2",
        ]
        self.processes = [self._start(web)] + [self._start([*cli, "worker"]) for _ in range(2)]
        self.token = fake_twilio.auth_token
        self.client = httpx.Client(base_url=self.base, timeout=10)
        try:
            self._wait_healthy()
        except BaseException:
            for process in self.processes:  # never leave servers running behind a failure
                process.kill()
                process.wait(timeout=30)
            raise

    def _start(self, argv):
        return subprocess.Popen(argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def _wait_healthy(self):
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if self.client.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError("the web processes did not start")

    def sms(self, text, sender, sid):
        params = {"MessageSid": sid, "From": sender, "To": TWILIO_NUMBER, "Body": text}
        url = self.base + "/webhooks/twilio/sms"
        signature = RequestValidator(self.token).compute_signature(url, params)
        response = self.client.post(
            "/webhooks/twilio/sms", data=params, headers={"X-Twilio-Signature": signature}
        )
        assert response.status_code == 200
        return response

    def stop(self) -> str:
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        logs = []
        for process in self.processes:
            out, err = process.communicate(timeout=30)
            logs.append(out.decode() + err.decode())
        self.client.close()
        return "\n".join(logs)


def replied_to(fake_twilio, number: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not any(m.to == number for m in fake_twilio.messages):
        assert time.monotonic() < deadline, f"no message to {number} within {timeout} s"
        time.sleep(0.05)


@on_postgres
def test_two_web_processes_and_two_workers_serve_correctly(database, fake_twilio, tmp_path):
    with database.session() as session:
        demo.seed(session)
    cluster = Cluster(database, fake_twilio, tmp_path)
    try:
        # A conversation whose turns land on whichever web process the kernel picks.
        cluster.sms("where is my prescription", MARIA, "SM" + "1" * 32)
        # her first reply sent before she answers it (Luis's reminders may arrive first)
        replied_to(fake_twilio, MARIA, timeout=20)
        cluster.sms("03/14/1985", MARIA, "SM" + "2" * 32)
        cluster.sms("03/14/1985", MARIA, "SM" + "2" * 32)  # Twilio redelivers: no second reply
        cluster.sms("what do i owe", MARIA, "SM" + "3" * 32)
        cluster.sms("thanks!", MARIA, "SM" + "4" * 32)
        response = cluster.client.post(
            "/events",
            headers={"Authorization": f"Bearer {API_KEY}"},
            json={"id": "mp-1", "type": "shipment.updated",
                  "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "data": {"shipment_id": "ship-maria-1", "patient_id": "demo-maria",
                           "prescription_id": "rx-maria-1", "carrier": "UPS",
                           "tracking_number": "1Z999AA10123456784", "status": "out_for_delivery"}},
        )  # fmt: skip
        assert response.status_code == 202
        # Maria: 4 replies + 1 proactive; Luis: his renewal and refill reminders (scheduler).
        fake_twilio.wait_for(7, timeout=30)
        time.sleep(3.0)  # more scheduler rounds in both workers: nothing may repeat
        metrics = cluster.client.get("/metrics").text
    finally:
        logs = cluster.stop()
    to_maria = [m.body for m in fake_twilio.messages if m.to == MARIA]
    assert len(to_maria) == 5, to_maria
    assert "date of birth" in to_maria[0]
    replies = "\n".join(to_maria)
    assert replies.count("date of birth") == 1  # verified once, remembered by every process
    assert "all paid up" in replies and "out for delivery" in replies
    reminders = sorted(m.body for m in fake_twilio.messages if m.to == LUIS)
    assert len(reminders) == 2, reminders
    assert "resurtido" in " ".join(reminders) and "renueva" in " ".join(reminders)
    assert len(fake_twilio.messages) == 7
    assert max(Counter((m.to, m.body) for m in fake_twilio.messages).values()) == 1
    inbound = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith('ps_inbound_messages_total{channel="sms"')
    )
    assert inbound == 4  # both uvicorn processes' counters, added up
    assert "ps_outbox_depth" in metrics
    json_lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert any(entry["event"] == "turn" for entry in json_lines)
    assert any(entry["event"] == "send" for entry in json_lines)
    assert_no_phi(logs)
