"""Sending through a user's own mail account over SMTP (Gmail, Naver, Kakao).

``SmtpSender.send`` uses ONE connection and ONE login for its whole list of recipients, and
sends one message per recipient (recipients never see each other; each gets its own
Message-ID). The orchestrator gets parallelism by running several activities, each with its
own connection; keep that number small per account (providers cap logins and daily sends).

Security rules, enforced here whatever the connection factory does:

- certificates and host names are always verified (system CAs, plus ``ca_file`` when set);
- the password is only sent over TLS: in STARTTLS mode a server that does not offer STARTTLS,
  or does not complete it, is refused, never used in plaintext; a TLS failure is final;
- smtplib's debug output (which prints the AUTH exchange) is switched off on every connection;
- nothing the server says is passed on; messages are written here and carry at most the
  numeric reply code. The password is never logged.

Outcomes per recipient (see ``sendmail.sending.results``): 5xx on login -> ``SMTP_AUTH_FAILED`` for
everyone, no retry (a wrong app password does not get better, and repeated failures can lock
the account); a refused recipient -> ``SMTP_RECIPIENT_REFUSED`` and the batch goes on; a refused
sender -> ``SMTP_SENDER_REFUSED`` for everyone not yet sent; 4xx -> retried with backoff up to
``SENDMAIL_SMTP_MAX_ATTEMPTS`` attempts, then ``SMTP_TEMPORARY_FAILURE``; a dropped connection ->
reconnect, log in again and retry the same recipient within the same budget, then
``SMTP_CONNECTION_FAILED`` for it and the rest.
"""

from __future__ import annotations

import base64
import logging
import smtplib
import ssl
import time
from collections.abc import Callable, Sequence

from pydantic import SecretStr

from sendmail.contract.addresses import ascii_address
from sendmail.contract.vocabulary import FailureCode, Provider
from sendmail.platform import telemetry
from sendmail.platform.settings import Settings
from sendmail.sending.content import RenderFailed
from sendmail.sending.mime import MailParts, compose, ensure_single_line, new_message_id
from sendmail.sending.providers import SmtpEndpoint, endpoint_for
from sendmail.sending.results import Delivery

logger = logging.getLogger(__name__)

#: Opens a connection to an endpoint with a timeout. For ``implicit`` endpoints it must return
#: a TLS connection (``smtplib.SMTP_SSL``); for ``starttls`` ones a plaintext one that the
#: sender upgrades itself.
ConnectFactory = Callable[[SmtpEndpoint, float], smtplib.SMTP]

_BACKOFF_FIRST_SECONDS = 1.0
_BACKOFF_MAX_SECONDS = 30.0
# Login mechanisms in order of preference. One mechanism is tried, once: smtplib.login() would
# try the next one after a 535, i.e. log in twice with a wrong password.
_AUTH_MECHANISMS = ("PLAIN", "LOGIN")


def tls_context(endpoint: SmtpEndpoint) -> ssl.SSLContext:
    """A verifying client TLS context: the system's CAs plus ``endpoint.ca_file`` when set.

    (``ssl.create_default_context(cafile=...)`` would load the file *instead of* the system
    CAs, so the extra file is added to a default context.)
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if endpoint.ca_file:
        context.load_verify_locations(cafile=endpoint.ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def default_connect(endpoint: SmtpEndpoint, timeout: float) -> smtplib.SMTP:
    """The default ``ConnectFactory``: TLS from the first byte in ``implicit`` mode."""
    if endpoint.tls_mode == "implicit":
        return smtplib.SMTP_SSL(
            endpoint.host, endpoint.port, timeout=timeout, context=tls_context(endpoint)
        )
    return smtplib.SMTP(endpoint.host, endpoint.port, timeout=timeout)


#: What a recipient left unsent by a pause or a cancel is (pending until the send resumes).
_HALTED = "not sent: the send was paused or canceled before this message"


class SmtpSender:
    """Sends one message per recipient through a provider's SMTP server, as the user."""

    def __init__(
        self,
        settings: Settings,
        *,
        connect: ConnectFactory | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._settings = settings
        self._connect: ConnectFactory = connect or default_connect
        self._sleep = sleep

    def send(
        self,
        provider: Provider,
        sender: str,
        password: SecretStr,
        recipients: Sequence[str],
        content: MailParts | Callable[[str], MailParts],
        *,
        on_sent: Callable[[int, str], None] | None = None,
        on_login: Callable[[bool], None] | None = None,
        before_login: Callable[[], bool] | None = None,
        halt: Callable[[], bool] | None = None,
    ) -> list[Delivery]:
        """Send ``content`` from ``sender`` to each recipient; one result each, in order.

        ``content`` is the message, or a function making each recipient's (personalised: one
        that raises :class:`~sendmail.sending.content.RenderFailed` fails that recipient
        ``RENDER_FAILED``, never sent).

        ``on_sent(index, message_id)`` is called right after the server accepts each message
        (e.g. to record it, so a re-run activity does not send it again); ``before_login()``
        before each login — False means "do not try" (the failed-login limit knows the password
        was refused), and every recipient fails ``SMTP_AUTH_FAILED`` without a login;
        ``on_login(ok)`` after each login the server answered for good: accepted, or refused
        with a 5xx (the failed-login limit counts these). ``halt()`` is asked before each
        message: True (the send was paused or canceled) leaves the rest pending, unsent. Raises
        ``ValueError`` when the sender or subject cannot be put in a header; every other
        expected failure is reported per recipient.
        """
        provider = Provider(provider)
        new_message_id(sender)  # validates the sender before anything is sent
        make = content if callable(content) else (lambda _recipient: content)
        if not callable(content):
            ensure_single_line("subject", content.subject)
        endpoint = endpoint_for(provider, self._settings)
        max_attempts = self._settings.SENDMAIL_SMTP_MAX_ATTEMPTS
        session = _Session(self, provider, endpoint, sender, password, on_login, before_login)
        results: list[Delivery] = []
        logger.info(
            "SMTP batch starting: provider=%s recipients=%d tls=%s",
            provider,
            len(recipients),
            endpoint.tls_mode,
        )
        try:
            for index, recipient in enumerate(recipients):
                if halt is not None and halt():
                    results.extend(
                        Delivery.postponed(r, FailureCode.CANCELED, _HALTED)
                        for r in recipients[index:]
                    )
                    break
                try:
                    parts = make(recipient)
                except RenderFailed as e:
                    results.append(Delivery.failed(recipient, FailureCode.RENDER_FAILED, str(e)))
                    continue
                try:
                    # The Message-ID is made once per recipient and reused on every retry.
                    message_id = new_message_id(sender)
                    message = compose(sender, recipient, parts, message_id=message_id)
                except ValueError:
                    results.append(
                        Delivery.failed(
                            recipient,
                            FailureCode.SMTP_RECIPIENT_REFUSED,
                            "the recipient address is not valid",
                        )
                    )
                    continue
                outcome = self._deliver(
                    session, index, recipient, message, message_id, max_attempts, halt
                )
                if isinstance(outcome, _Abort):
                    logger.warning(
                        "SMTP batch stopped at recipient %d of %d: %s",
                        index + 1,
                        len(recipients),
                        outcome.code,
                    )
                    results.extend(
                        Delivery.failed(r, outcome.code, outcome.message)
                        for r in recipients[index:]
                    )
                    break
                results.append(outcome)
                if outcome.ok and on_sent is not None:
                    on_sent(index, message_id)
        finally:
            session.close()
        logger.info(
            "SMTP batch done: provider=%s sent=%d failed=%d held=%d",
            provider,
            sum(1 for r in results if r.ok),
            sum(1 for r in results if r.is_final_failure),
            sum(1 for r in results if r.pending),
        )
        return results

    # --- one recipient ---------------------------------------------------------------------

    def _deliver(
        self,
        session: _Session,
        index: int,
        recipient: str,
        message: bytes,
        message_id: str,
        max_attempts: int,
        halt: Callable[[], bool] | None = None,
    ) -> Delivery | _Abort:
        provider_name = session.provider.display_name
        envelope = ascii_address(recipient)  # any server takes it: no SMTPUTF8 needed for a domain
        attempt = 0
        while True:
            attempt += 1
            try:
                connection = session.open()
                refused = connection.sendmail(session.sender, [envelope], message)
                if not refused:
                    return Delivery.sent(recipient, message_id)
                code = refused.get(envelope, (550, b""))[0]
                failure = _rcpt_failure(recipient, code)
            except _Abort as abort:
                return abort
            except _Retryable as retryable:
                failure = retryable
            except smtplib.SMTPRecipientsRefused as error:
                failure = _rcpt_failure(recipient, error.recipients.get(envelope, (550, b""))[0])
            except smtplib.SMTPSenderRefused as error:
                if not _is_temporary(error.smtp_code):
                    return _Abort(
                        FailureCode.SMTP_SENDER_REFUSED,
                        f"the SMTP server refused the sender address ({error.smtp_code}): "
                        f"the {provider_name} account may not send as this address",
                    )
                failure = _temporary(error.smtp_code)
            except smtplib.SMTPResponseException as error:  # SMTPDataError and other replies
                if not _is_temporary(error.smtp_code):
                    return Delivery.failed(
                        recipient,
                        FailureCode.SMTP_ERROR,
                        f"the SMTP server rejected the message ({error.smtp_code})",
                    )
                failure = _temporary(error.smtp_code)
            except smtplib.SMTPServerDisconnected:
                failure = _dropped()
            except smtplib.SMTPException:  # e.g. SMTPNotSupportedError: no retry helps
                return Delivery.failed(
                    recipient,
                    FailureCode.SMTP_ERROR,
                    f"the SMTP server for {provider_name} cannot take this message",
                )
            except OSError:  # reset, timeout, TLS error after the handshake: the link is gone
                failure = _dropped()

            if isinstance(failure, Delivery):
                return failure
            if not session.usable():
                # A drop after DATA was sent may or may not have delivered the message. The
                # retry re-sends the very same message, same Message-ID included, so a
                # receiver that saw both can tell they are one mail and deduplicate.
                session.close()
            if attempt >= max_attempts:
                logger.warning(
                    "SMTP recipient %d gave up after %d attempts: %s",
                    index + 1,
                    attempt,
                    failure.code,
                )
                if failure.code is FailureCode.SMTP_TEMPORARY_FAILURE:
                    return Delivery.failed(
                        recipient,
                        failure.code,
                        f"the SMTP server for {provider_name} deferred this message "
                        f"({failure.reply_code}) on all {attempt} attempts",
                    )
                return _Abort(
                    failure.code,
                    f"the connection to the SMTP server for {provider_name} failed and could "
                    f"not be re-established after {attempt} attempts",
                )
            if failure.code is FailureCode.SMTP_TEMPORARY_FAILURE:  # a 4xx: the server's pace
                telemetry.throttled("smtp")
            delay = min(_BACKOFF_FIRST_SECONDS * 2 ** (attempt - 1), _BACKOFF_MAX_SECONDS)
            logger.info(
                "SMTP recipient %d attempt %d failed (%s, reply %s); retrying in %.1fs",
                index + 1,
                attempt,
                failure.code,
                failure.reply_code,
                delay,
            )
            self._sleep(delay)
            if halt is not None and halt():  # paused or canceled meanwhile: not tried again now
                return Delivery.postponed(recipient, FailureCode.CANCELED, _HALTED)

    # --- connections ---------------------------------------------------------------------------

    def _open(self, provider: Provider, endpoint: SmtpEndpoint) -> smtplib.SMTP:
        """Connect and secure the connection (not yet logged in)."""
        provider_name = provider.display_name
        try:
            connection = self._connect(endpoint, self._settings.SENDMAIL_SMTP_TIMEOUT_SECONDS)
        except ssl.SSLError as error:
            raise _tls_abort(provider_name) from error
        except smtplib.SMTPConnectError as error:  # the greeting was not 220
            if _is_temporary(error.smtp_code):
                raise _Retryable(FailureCode.SMTP_TEMPORARY_FAILURE, error.smtp_code) from error
            raise _Abort(
                FailureCode.SMTP_CONNECTION_FAILED,
                f"the SMTP server for {provider_name} refused the connection ({error.smtp_code})",
            ) from error
        except OSError as error:  # refused, unreachable, timed out, name not resolved
            raise _dropped() from error
        try:
            # Never on: smtplib's debug output prints the whole AUTH exchange to stderr.
            connection.set_debuglevel(0)
            if endpoint.tls_mode == "starttls" and not isinstance(connection.sock, ssl.SSLSocket):
                connection.ehlo()
                if not connection.has_extn("starttls"):
                    raise _no_starttls_abort(provider_name)
                code, _ = connection.starttls(context=tls_context(endpoint))
                if code != 220:
                    raise _no_starttls_abort(provider_name)
            if not isinstance(connection.sock, ssl.SSLSocket):
                # Implicit mode given a plaintext connection by a custom factory.
                raise _no_starttls_abort(provider_name)
            connection.ehlo()
        except ssl.SSLError as error:
            _close(connection)
            raise _tls_abort(provider_name) from error
        except smtplib.SMTPResponseException as error:
            _close(connection)
            if _is_temporary(error.smtp_code):
                raise _Retryable(FailureCode.SMTP_TEMPORARY_FAILURE, error.smtp_code) from error
            raise _Abort(
                FailureCode.SMTP_CONNECTION_FAILED,
                f"the SMTP server for {provider_name} refused the session ({error.smtp_code})",
            ) from error
        except OSError as error:
            _close(connection)
            raise _dropped() from error
        except BaseException:
            _close(connection)
            raise
        return connection

    def _login(
        self,
        connection: smtplib.SMTP,
        provider: Provider,
        sender: str,
        password: SecretStr,
        on_login: Callable[[bool], None] | None = None,
        before_login: Callable[[], bool] | None = None,
    ) -> None:
        """Log in once, with one mechanism; a 5xx refusal is final (``on_login`` is told of
        it, and of an accepted login). Not at all when ``before_login()`` says no."""
        provider_name = provider.display_name
        if before_login is not None and not before_login():
            raise _Abort(
                FailureCode.SMTP_AUTH_FAILED,
                f"the SMTP server for {provider_name} rejected this password for this account "
                "within the last hour, so it was not tried again: check the sender address and "
                "its app password",
            )
        offered = connection.esmtp_features.get("auth", "").upper().split()
        mechanism = next((m for m in _AUTH_MECHANISMS if m in offered), None)
        if mechanism is None:
            raise _Abort(
                FailureCode.SMTP_ERROR,
                f"the SMTP server for {provider_name} offers no supported login method",
            )
        try:
            _authenticate(connection, mechanism, sender, password)
        except smtplib.SMTPAuthenticationError as error:
            if _is_temporary(error.smtp_code):
                raise _Retryable(FailureCode.SMTP_TEMPORARY_FAILURE, error.smtp_code) from error
            logger.warning("SMTP login refused: provider=%s reply=%d", provider, error.smtp_code)
            if on_login is not None:
                on_login(False)
            raise _Abort(
                FailureCode.SMTP_AUTH_FAILED,
                f"the SMTP server rejected the login for {provider_name} ({error.smtp_code}): "
                "check the sender address and its app password (2-step verification must be "
                "on; the account password itself does not work)",
            ) from error
        if on_login is not None:
            on_login(True)


# --- internals ---------------------------------------------------------------------------------


class _Session:
    """The one connection of a ``send`` call: opened lazily, reopened after a drop."""

    def __init__(
        self,
        owner: SmtpSender,
        provider: Provider,
        endpoint: SmtpEndpoint,
        sender: str,
        password: SecretStr,
        on_login: Callable[[bool], None] | None = None,
        before_login: Callable[[], bool] | None = None,
    ) -> None:
        self.owner = owner
        self.provider = provider
        self.endpoint = endpoint
        self.sender = sender
        self._password = password
        self._on_login = on_login
        self._before_login = before_login
        self._connection: smtplib.SMTP | None = None

    def open(self) -> smtplib.SMTP:
        if self._connection is None:
            connection = self.owner._open(self.provider, self.endpoint)
            try:
                self.owner._login(
                    connection,
                    self.provider,
                    self.sender,
                    self._password,
                    self._on_login,
                    self._before_login,
                )
            except BaseException:
                _close(connection)
                raise
            self._connection = connection
        return self._connection

    def usable(self) -> bool:
        """False once smtplib has closed the socket (after a drop or a 421)."""
        return self._connection is not None and self._connection.sock is not None

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            _close(connection)


class _Retryable(Exception):
    """A failure worth another attempt; ``code`` is what the recipient gets if none is left."""

    def __init__(self, code: FailureCode, reply_code: int | None = None) -> None:
        super().__init__(code, reply_code)
        self.code = code
        self.reply_code = reply_code


class _Abort(Exception):
    """A failure that ends the batch: this recipient and every later one get it."""

    def __init__(self, code: FailureCode, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


def _authenticate(connection: smtplib.SMTP, mechanism: str, user: str, password: SecretStr) -> None:
    """``AUTH PLAIN`` or ``AUTH LOGIN`` with the credentials in UTF-8.

    Not ``smtplib.SMTP.auth``: it encodes them as ASCII, so a password with any other character
    raised ``UnicodeEncodeError`` before the server saw it, and the whole batch failed. PLAIN
    is UTF-8 by definition (RFC 4616); LOGIN servers take the same bytes. The secret is never
    stored on the connection. A refusal raises ``SMTPAuthenticationError`` as smtplib's would.
    """

    def encoded(text: str) -> str:
        return base64.b64encode(text.encode("utf-8")).decode("ascii")

    secret = password.get_secret_value()
    if mechanism == "PLAIN":
        code, reply = connection.docmd("AUTH", "PLAIN " + encoded(f"\0{user}\0{secret}"))
    else:
        code, reply = connection.docmd("AUTH", f"LOGIN {encoded(user)}")
        if code == 334 and _challenge(reply).startswith("user"):
            # The server ignored the initial response and asks for the user name again: never
            # answer a "Username:" prompt with the password.
            code, reply = connection.docmd(encoded(user))
        if code == 334:  # "Password:"
            code, reply = connection.docmd(encoded(secret))
    if code not in (235, 503):  # 503: already authenticated, as smtplib counts it
        raise smtplib.SMTPAuthenticationError(code, reply)


def _challenge(reply: bytes) -> str:
    """A LOGIN prompt (``334 VXNlcm5hbWU6``) decoded and lower-cased; "" if not base64."""
    try:
        return base64.b64decode(reply.strip(), validate=True).decode("utf-8").lower()
    except (ValueError, UnicodeDecodeError):
        return ""


def _close(connection: smtplib.SMTP) -> None:
    try:
        if connection.sock is not None:
            connection.quit()
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        connection.close()


def _is_temporary(reply_code: int) -> bool:
    return 400 <= reply_code < 500


def _temporary(reply_code: int) -> _Retryable:
    return _Retryable(FailureCode.SMTP_TEMPORARY_FAILURE, reply_code)


def _dropped() -> _Retryable:
    return _Retryable(FailureCode.SMTP_CONNECTION_FAILED)


def _rcpt_failure(recipient: str, reply_code: int) -> Delivery | _Retryable:
    if _is_temporary(reply_code):
        return _temporary(reply_code)
    return Delivery.failed(
        recipient,
        FailureCode.SMTP_RECIPIENT_REFUSED,
        f"the SMTP server refused this recipient ({reply_code})",
    )


def _tls_abort(provider_name: str) -> _Abort:
    return _Abort(
        FailureCode.SMTP_CONNECTION_FAILED,
        f"could not establish a verified TLS connection to the SMTP server for {provider_name}",
    )


def _no_starttls_abort(provider_name: str) -> _Abort:
    return _Abort(
        FailureCode.SMTP_CONNECTION_FAILED,
        f"the SMTP server for {provider_name} did not secure the connection with STARTTLS; "
        "the password is never sent unencrypted",
    )
