"""What HTML and personalisation cost: per message, in the achievable rate, and at admission.

Three measurements, each next to its baseline and reported as a ratio:

1. **Per message** (in process, CPU time): making one recipient's message — rendering
   (:class:`~sendmail.sending.content.MessageMaker`) and writing its bytes
   (:func:`~sendmail.sending.mime.compose`) — for a realistic newsletter (about 20 KB of HTML,
   a text part, 5 variables), personalised and marketing (token, footer, headers), against the
   same newsletter not personalised (its parts encoded once per send) and v1's short text.
   Also put against the whole CPU a recipient costs the service (``docs/benchmarks/scale.json``).
2. **Rate at 300/s**: the real app under devhost against the SES look-alike at 300 calls a second
   (50 ms latency), one send of the newsletter not personalised, one personalised marketing:
   the rate each achieves and devhost's CPU.
3. **Admission**: :func:`~sendmail.contract.models.parse_request` (decode, validate, compile and
   check the templates against every recipient) for 100,000 recipients with 5 variables each,
   against 100,000 plain ``recipientEmails``.

``python -m bench.content`` (in ``make bench``); results in ``docs/benchmarks/content.json`` and
the table between ``<!-- content:begin -->`` and ``<!-- content:end -->`` in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.sending import (
    LATENCY_MS,
    OUT_DIR,
    SENDER,
    accounting,
    app_against,
    cpu_seconds,
    recipients,
    wait_done,
    write_between_markers,
)

#: The newsletter's variables (each recipient gives all five).
VARIABLES = ("name", "company", "points", "coupon", "expires")


def newsletter_html() -> str:
    """About 20 KB of a typical marketing newsletter: table layout, inline styles, Korean text,
    the five variables used a few times."""
    item = (
        '<tr><td style="padding:16px 24px;border-bottom:1px solid #eeeeee">'
        '<h2 style="margin:0 0 8px;font-size:18px;color:#222222">{title}</h2>'
        '<p style="margin:0;font-size:14px;line-height:1.6;color:#444444">{text}</p>'
        '<a href="https://www.aifactory.page/news/{n}?utm_source=mail&amp;utm_medium=newsletter" '
        'style="display:inline-block;margin-top:8px;color:#1a73e8">자세히 보기 →</a></td></tr>'
    )
    text = (
        "AI Factory의 12월 업데이트를 소개합니다. 새로운 경진대회와 학습 자료, 그리고 커뮤니티 "
        "소식을 한곳에 모았습니다. 관심 있는 주제를 골라 지금 바로 참여해 보세요. "
    ) * 2
    items = "".join(item.format(title=f"{n}. 이달의 소식", text=text, n=n) for n in range(1, 27))
    return (
        '<!DOCTYPE html><html lang="ko"><head><meta charset="utf-8">'
        "<title>12월 뉴스레터</title></head>"
        '<body style="margin:0;background:#f5f5f5">'
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0">'
        '<tr><td style="padding:24px;font-size:16px">안녕하세요 <b>{{ name }}</b>님 '
        "({{ company }}),</td></tr>"
        '<tr><td style="padding:0 24px">적립 포인트: <b>{{ points }}</b>점 · 쿠폰 '
        "<code>{{ coupon }}</code> ({{ expires }}까지)</td></tr>"
        f"{items}"
        '<tr><td style="padding:24px;font-size:12px;color:#888888">{{ name }}님께 보내드린 '
        "메일입니다. 쿠폰 {{ coupon }}은 {{ expires }}까지 쓸 수 있습니다.</td></tr>"
        "</table></body></html>"
    )


def newsletter_text() -> str:
    lines = [
        "안녕하세요 {{ name }}님 ({{ company }}),",
        "적립 포인트: {{ points }}점, 쿠폰 {{ coupon }} ({{ expires }}까지)",
        "",
    ]
    for n in range(1, 17):
        lines += [f"{n}. 이달의 소식", "AI Factory의 12월 업데이트를 소개합니다.", ""]
        lines.append(f"https://www.aifactory.page/news/{n}")
    return "\n".join(lines)


def values(index: int) -> dict[str, str]:
    return {
        "name": f"김민수{index}",
        "company": "에이아이팩토리 & 파트너스",
        "points": str(1000 + index),
        "coupon": f"DEC-{index:06d}",
        "expires": "2026-12-31",
    }


def literal(text: str) -> str:
    """The newsletter with its variables filled in once: the same message for everyone."""
    out = text
    for name, value in values(0).items():
        out = out.replace("{{ " + name + " }}", value)
    return out


# --- 1. per message ----------------------------------------------------------------------------


def per_message(count: int) -> dict[str, Any]:
    from sendmail.platform.settings import Settings
    from sendmail.sending.content import MessageMaker
    from sendmail.sending.jobs import Mail
    from sendmail.sending.mime import compose
    from sendmail.sending.unsubscribe import UnsubscribeTokens, new_key

    key = new_key()
    settings = Settings(
        SENDMAIL_PUBLIC_BASE_URL="https://mail.aifactory.page",
        SENDMAIL_UNSUBSCRIBE_KEYS=key,
    )
    tokens = UnsubscribeTokens(key)
    html, text = newsletter_html(), newsletter_text()
    cases = {
        "v1_text": Mail(sender=SENDER, subject="벤치마크", body="본문"),
        "newsletter": Mail(
            sender=SENDER, subject="12월 소식", body=literal(text), html=literal(html)
        ),
        "personalised": Mail(
            sender=SENDER,
            subject="{{ name }}님, 12월 소식",
            body=text,
            html=html,
            personalised=True,
        ),
        "personalised_marketing": Mail(
            sender=SENDER,
            subject="{{ name }}님, 12월 소식",
            body=text,
            html=html,
            personalised=True,
            category="marketing",
        ),
    }
    to = recipients(count, prefix="m")
    variables = [values(i) for i in range(count)]
    results: dict[str, Any] = {}
    for name, mail in cases.items():
        maker = MessageMaker(mail, "0f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e", settings, tokens)
        samples = []
        size = 0
        for _ in range(5):
            started = time.process_time()
            for address, vals in zip(to, variables, strict=True):
                size = len(compose(SENDER, address, maker.parts(address, vals), message_id=None))
            samples.append((time.process_time() - started) / count * 1e6)
        results[name] = {"us_per_message": round(statistics.median(samples), 1), "bytes": size}
    base = results["newsletter"]["us_per_message"]
    for row in results.values():
        row["ratio_to_newsletter"] = round(row["us_per_message"] / base, 2)
    scale = OUT_DIR / "scale.json"
    if scale.exists():
        measured = json.loads(scale.read_text(encoding="utf-8"))
        per_recipient = _cpu_per_recipient_us(measured)
        if per_recipient:
            results["send_cpu_us_per_recipient"] = per_recipient
    results["html_bytes"] = len(html.encode("utf-8"))
    results["text_bytes"] = len(text.encode("utf-8"))
    return results


def _cpu_per_recipient_us(scale: dict[str, Any]) -> float | None:
    """The whole service's CPU per recipient at 10,000 (scale.json), in microseconds."""
    for run in scale.get("runs", []):
        if run.get("design") == "current" and run.get("recipients") == 10_000:
            return round(float(run["cpu_per_1000"]) * 1000, 0)
    return None


# --- 2. rate at 300/s ----------------------------------------------------------------------


def rate_run(lookalike: Any, body: dict[str, Any], count: int, rate: float) -> dict[str, Any]:
    lookalike.configure(
        rate=rate, burst_seconds=1, latency_ms=LATENCY_MS, jitter_ms=5, throttle=0, errors=0
    )
    with (
        tempfile.TemporaryDirectory(prefix="bench-") as tmp,
        app_against(
            lookalike,
            Path(tmp) / "state",
            SENDMAIL_PUBLIC_BASE_URL="https://mail.aifactory.page",
        ) as host,
    ):
        lookalike.reset()
        assert host.proc is not None
        cpu_before = cpu_seconds(host.proc.pid)
        started = time.monotonic()
        response = host.request("POST", "/api/v1/emails/aws-send", json=body, timeout=300)
        if response.status_code != 202:
            raise RuntimeError(f"aws-send answered {response.status_code}: {response.text[:300]}")
        status = wait_done(host, str(response.headers["Location"]), timeout=count / rate * 4 + 120)
        elapsed = time.monotonic() - started
        cpu = cpu_seconds(host.proc.pid) - cpu_before
    to = [entry if isinstance(entry, str) else entry["email"] for entry in _listed(body)]
    counts = accounting(lookalike, to)
    achieved = count / elapsed
    return {
        "recipients": count,
        "seconds": round(elapsed, 2),
        "achieved_per_s": round(achieved, 1),
        "ratio_to_rate": round(achieved / rate, 3),
        "sent": status["progress"]["sent"],
        "devhost_cpu_percent": round(100 * cpu / elapsed, 1),
        "cpu_per_1000": round(cpu / (count / 1000), 3),
        "lost": counts["lost"],
        "duplicated": counts["duplicated"],
    }


def _listed(body: dict[str, Any]) -> list[Any]:
    listed: list[Any] = body.get("recipientEmails") or body.get("recipients") or []
    return listed


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median achieved rate, with the median CPU figures of all runs."""
    ordered = sorted(runs, key=lambda r: r["achieved_per_s"])
    middle = dict(ordered[len(ordered) // 2])
    for key in ("cpu_per_1000", "devhost_cpu_percent"):
        middle[key] = round(statistics.median(r[key] for r in runs), 3)
    middle["trials"] = len(runs)
    middle["lost"] = sum(r["lost"] for r in runs)
    middle["duplicated"] = sum(r["duplicated"] for r in runs)
    return middle


def rate(count: int, per_second: float, trials: int) -> dict[str, Any]:
    from bench.ses_lookalike import start_lookalike

    short = recipients(count, prefix="t")
    plain = recipients(count, prefix="p")
    personal = recipients(count, prefix="q")
    html, text = newsletter_html(), newsletter_text()
    v1_text = {
        "senderEmail": SENDER,
        "recipientEmails": short,
        "subject": "벤치마크",
        "body": "본문",
    }
    unpersonalised = {
        "senderEmail": SENDER,
        "recipientEmails": plain,
        "subject": "12월 소식",
        "body": literal(text),
        "html": literal(html),
    }
    personalised = {
        "senderEmail": SENDER,
        "recipients": [{"email": e, "variables": values(i)} for i, e in enumerate(personal)],
        "subject": "{{ name }}님, 12월 소식",
        "body": text,
        "html": html,
        "category": "marketing",
    }
    bodies: dict[str, dict[str, Any]] = {
        "v1_text": v1_text,
        "unpersonalised": unpersonalised,
        "personalised": personalised,
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in bodies}
    with start_lookalike(
        rate=per_second, latency_ms=LATENCY_MS, verified=[SENDER], daily_quota=10_000_000, seed=5
    ) as lookalike:
        for _ in range(trials):  # interleaved: a slow moment of the machine hits every kind
            for name, body in bodies.items():
                runs[name].append(rate_run(lookalike, body, count, per_second))
                print(json.dumps({name: runs[name][-1]}), flush=True)
    short_run, base, personal_run = (_median_run(runs[name]) for name in bodies)
    return {
        "rate": per_second,
        "v1_text": short_run,
        "unpersonalised": base,
        "personalised_marketing": personal_run,
        "achieved_ratio": round(personal_run["achieved_per_s"] / base["achieved_per_s"], 3),
        "cpu_ratio": round(personal_run["cpu_per_1000"] / base["cpu_per_1000"], 2),
    }


# --- 3. admission ----------------------------------------------------------------------------


def admission(count: int) -> dict[str, Any]:
    from sendmail.contract.models import AwsEmailRequest, Limits, parse_request

    limits = Limits(
        max_recipients=count,
        max_subject_chars=998,
        max_body_bytes=102_400,
        max_html_bytes=102_400,
    )
    to = recipients(count, prefix="a")
    html, text = newsletter_html(), newsletter_text()
    plain = json.dumps(
        {
            "senderEmail": SENDER,
            "recipientEmails": to,
            "subject": "12월 소식",
            "body": literal(text),
            "html": literal(html),
        }
    ).encode()
    personal = json.dumps(
        {
            "senderEmail": SENDER,
            "recipients": [{"email": e, "variables": values(i)} for i, e in enumerate(to)],
            "subject": "{{ name }}님, 12월 소식",
            "body": text,
            "html": html,
            "category": "marketing",
        },
        ensure_ascii=False,
    ).encode()

    def seconds(raw: bytes) -> float:
        samples = []
        for _ in range(3):
            started = time.process_time()
            parse_request(AwsEmailRequest, raw, limits)
            samples.append(time.process_time() - started)
        return statistics.median(samples)

    plain_s, personal_s = seconds(plain), seconds(personal)
    return {
        "recipients": count,
        "plain_seconds": round(plain_s, 3),
        "personalised_seconds": round(personal_s, 3),
        "ratio": round(personal_s / plain_s, 2),
        "plain_request_mb": round(len(plain) / 1e6, 1),
        "personalised_request_mb": round(len(personal) / 1e6, 1),
    }


# --- report ----------------------------------------------------------------------------------


def table(results: dict[str, Any]) -> str:
    lines = []
    per = results.get("per_message")
    if per:
        lines += [
            f"Making one message (render + MIME bytes), CPU per message; the newsletter is "
            f"{per['html_bytes']:,} bytes of HTML and {per['text_bytes']:,} of text, "
            "5 variables:",
            "",
            "| message | µs per message | ratio to the newsletter not personalised | bytes |",
            "|---|---:|---:|---:|",
        ]
        names = {
            "v1_text": "v1's short text, no HTML",
            "newsletter": "the newsletter, not personalised (baseline)",
            "personalised": "the newsletter, personalised",
            "personalised_marketing": "personalised marketing (token, footer, headers)",
        }
        for key, label in names.items():
            row = per[key]
            lines.append(
                f"| {label} | {row['us_per_message']} | {row['ratio_to_newsletter']} | "
                f"{row['bytes']:,} |"
            )
        whole = per.get("send_cpu_us_per_recipient")
        if whole:
            share = per["personalised_marketing"]["us_per_message"] / whole
            lines += [
                "",
                f"A recipient costs the whole service about {whole:.0f} µs of CPU (Scale, "
                f"10,000 recipients): personalised marketing rendering is {share:.1%} of that.",
            ]
    run = results.get("rate")
    if run:
        base, personal = run["unpersonalised"], run["personalised_marketing"]
        lines += [
            "",
            f"One send of {base['recipients']:,} recipients at {run['rate']:.0f}/s (SES "
            f"look-alike, 50 ms latency), through devhost; the median of {base.get('trials', 1)} "
            "runs each (lost and duplicated: all runs):",
            "",
            "| send | achieved /s | ratio to the rate | devhost CPU % | CPU-s per 1,000 | "
            "lost / duplicated |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        rows = [
            ("v1's short text", run.get("v1_text")),
            ("newsletter, not personalised", base),
            ("newsletter, personalised marketing", personal),
        ]
        for label, row in rows:
            if row is None:
                continue
            lines.append(
                f"| {label} | {row['achieved_per_s']} | {row['ratio_to_rate']} | "
                f"{row['devhost_cpu_percent']} | {row['cpu_per_1000']} | "
                f"{row['lost']} / {row['duplicated']} |"
            )
        lines += [
            "",
            f"Personalised ÷ not personalised: rate {run['achieved_ratio']}, CPU "
            f"{run['cpu_ratio']}.",
            "",
            "![CPU per 1,000 recipients at 300/s](benchmarks/content.png)",
        ]
    adm = results.get("admission")
    if adm:
        lines += [
            "",
            f"Admission (decode, validate, compile and check the templates) of "
            f"{adm['recipients']:,} recipients: {adm['personalised_seconds']} s personalised "
            f"(5 variables each, {adm['personalised_request_mb']} MB) against "
            f"{adm['plain_seconds']} s for plain recipientEmails ({adm['plain_request_mb']} MB):"
            f" {adm['ratio']} times.",
        ]
    return "\n".join(lines)


def chart(results: dict[str, Any]) -> None:
    """docs/benchmarks/content.png: CPU per 1,000 recipients of each send at 300/s, split into
    making the messages (per message, measured in process) and everything else."""
    run, per = results.get("rate"), results.get("per_message")
    if not run or not per or "v1_text" not in run:
        return
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    sends = [
        ("v1's short text", run["v1_text"], per["v1_text"]),
        ("22 KB newsletter", run["unpersonalised"], per["newsletter"]),
        (
            "newsletter,\npersonalised marketing",
            run["personalised_marketing"],
            per["personalised_marketing"],
        ),
    ]
    making = [p["us_per_message"] / 1000 for _, _, p in sends]  # CPU-s per 1,000 messages
    rest = [r["cpu_per_1000"] - m for (_, r, _), m in zip(sends, making, strict=True)]
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = range(len(sends))
    ax.bar(xs, rest, 0.5, label="sending (SES calls, ledger, orchestration)")
    ax.bar(xs, making, 0.5, bottom=rest, label="making the message (render + MIME)")
    for x, (_, r, _) in zip(xs, sends, strict=True):
        ax.text(x, r["cpu_per_1000"] + 0.05, f"{r['achieved_per_s']:.0f}/s", ha="center")
    ax.set_xticks(list(xs), [label for label, _, _ in sends])
    ax.set_ylabel("devhost CPU-s per 1,000 recipients")
    ax.set_ylim(0, max(r["cpu_per_1000"] for _, r, _ in sends) * 1.45)
    ax.set_title(f"One send of {run['unpersonalised']['recipients']:,} at {run['rate']:.0f}/s")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(OUT_DIR / "content.png", dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.content", description=__doc__)
    parser.add_argument("--only", default="per_message,rate,admission")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    wanted = set(args.only.split(","))
    path = OUT_DIR / "content.json"
    results: dict[str, Any] = {}
    if path.exists():
        results = json.loads(path.read_text(encoding="utf-8"))
    if "per_message" in wanted:
        results["per_message"] = per_message(500 if args.quick else 2000)
        print(json.dumps(results["per_message"]), flush=True)
    if "admission" in wanted:
        results["admission"] = admission(10_000 if args.quick else 100_000)
        print(json.dumps(results["admission"]), flush=True)
    if "rate" in wanted:
        results["rate"] = rate(1500 if args.quick else 9000, 300, 1 if args.quick else 3)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    chart(results)
    write_between_markers("content", table(results))
    print(table(results))


if __name__ == "__main__":
    main()
