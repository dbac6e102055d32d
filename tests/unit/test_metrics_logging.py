"""MetricsCollector statistics and logging configuration with redaction."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from xcomm import MetricsCollector, configure_logging, get_logger, redact
from xcomm._logging import redact_url, scrub


def test_stats_breakdown_and_percentiles() -> None:
    metrics = MetricsCollector()
    for i in range(100):
        metrics.record(
            "smtp",
            "send",
            duration=(i + 1) / 1000,
            success=i % 10 != 0,
            error=None if i % 10 else "ServiceUnavailable",
        )
    metrics.record("webhook", "send", duration=0.5, success=True)
    smtp = metrics.get_stats(provider="smtp")
    assert (smtp.total, smtp.successful, smtp.failed) == (100, 90, 10)
    assert smtp.success_rate == 90.0
    assert smtp.avg_duration == pytest.approx(0.0505)
    assert smtp.p50_duration == pytest.approx(0.050, abs=0.0011)
    assert smtp.p99_duration == pytest.approx(0.099, abs=0.0011)
    assert smtp.errors == {"ServiceUnavailable": 10}
    assert metrics.get_stats().total == 101
    assert set(metrics.get_operation_breakdown()) == {"smtp.send", "webhook.send"}
    assert metrics.providers() == ["smtp", "webhook"]
    metrics.reset()
    assert metrics.get_stats().total == 0
    assert metrics.get_stats().success_rate == 0.0


def test_start_operation_as_context_manager_and_explicit() -> None:
    metrics = MetricsCollector()
    with metrics.start_operation("digest", "app"):
        pass
    with pytest.raises(KeyError), metrics.start_operation("digest", "app"):
        raise KeyError("x")
    op = metrics.start_operation("digest", "app")
    op.complete(success=False, error="boom")
    op.complete(success=True)  # ignored: already complete
    stats = metrics.get_stats(provider="app", operation="digest")
    assert (stats.total, stats.successful) == (3, 1)
    assert stats.errors == {"KeyError": 1, "boom": 1}


def test_redaction() -> None:
    headers = {"Authorization": "Bearer abc", "X-Api-Key": "k", "Accept": "json"}
    assert redact(headers) == {"Authorization": "***", "X-Api-Key": "***", "Accept": "json"}
    assert (
        redact_url("https://hooks.slack.com/services/T/B/XYZ?token=1")
        == "https://hooks.slack.com/…"
    )
    assert redact_url("http://localhost:8080") == "http://localhost:8080"
    assert scrub("Authorization: Bearer sk-123 password=hunter2 smtp://u:pw@host") == (
        "Authorization: Bearer *** password=*** smtp://u:***@host"
    )


def test_configure_logging_json_to_file_with_fields_and_scrubbing(tmp_path: Path) -> None:
    log_file = tmp_path / "xcomm.log"
    logger = configure_logging("DEBUG", log_file=str(log_file), json=True)
    try:
        log = get_logger("campaigns", platform="smtp")
        log.info("sent with token=abc123", recipients=3, password="hunter2")
        for handler in logger.handlers:
            handler.flush()
        line = json.loads(log_file.read_text().strip().splitlines()[-1])
        assert line["logger"] == "xcomm.campaigns"
        assert line["message"] == "sent with token=***"
        assert line["platform"] == "smtp"
        assert line["recipients"] == 3
        assert line["password"] == "***"
        # configuring again replaces our handlers instead of stacking them
        configure_logging("INFO")
        assert sum(getattr(h, "_xcomm", False) for h in logger.handlers) == 1
    finally:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
        logger.setLevel(logging.NOTSET)


@pytest.mark.parametrize("level", ["LOUD", "", None, 1.5])
def test_configure_logging_rejects_unknown_levels(level: object) -> None:
    from xcomm import ConfigurationError

    with pytest.raises(ConfigurationError, match="log level"):
        configure_logging(level)  # type: ignore[arg-type]
