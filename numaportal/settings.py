"""NUMA Portal settings: one module, driven by environment variables with safe defaults.

Nothing secret lives here. Without SECRET_KEY in the environment a random key is generated
once and kept in `.secret_key` next to manage.py (git-ignored), so a first run needs no set-up
and sessions survive a restart.
"""

import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={value!r}: expected true/false")


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def _secret_key() -> str:
    key = os.environ.get("SECRET_KEY")
    if key:
        return key
    path = BASE_DIR / ".secret_key"
    if not path.exists():
        # O_EXCL: two processes starting together (web, worker, beat) must agree on one key.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",
    "django_celery_beat",
    "django_filters",
    "rest_framework",
    "knox",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "numaportal",
    "hosts",
    "vms",
    "changes",
    "balancing",
    "api",
    "web",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Pages compressed for browsers that accept gzip (a 1,000-VM host page or a cell drawing
    # shrinks 15 to 40 times). Below WhiteNoise, which serves static files compressed already.
    # BREACH (guessing a secret in a compressed body that also reflects attacker input): the
    # one secret our pages carry is the CSRF token (forms, hx-headers), and Django masks it
    # with a fresh random mask in every response, so it never repeats between responses for
    # an attacker to converge on; the session id is in a cookie, never in a body; and Django's
    # GZipMiddleware adds a random number of bytes to each compressed response (its "gzip
    # compression ratio randomization"). Nothing else secret is rendered (the metrics token
    # is only compared, never shown).
    "django.middleware.gzip.GZipMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a locked-out login into the lockout page (429).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "web.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "numaportal.wsgi.application"

# SQLite is the zero-set-up default; production and CI use PostgreSQL through DATABASE_URL
# (postgres://user@host:5432/name, psycopg 3).
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "60")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded default has several writers at once: web requests, the workers (central and
    # on-host) and beat, each its own process and connection. Without these options a change
    # requested while a sync was writing failed with "database is locked":
    # - transaction_mode IMMEDIATE: every atomic() takes the write lock at BEGIN, where SQLite
    #   waits for it (busy timeout). A DEFERRED transaction that reads first (a sync's
    #   select_for_update is a plain SELECT here, a change's validation reads) and writes later
    #   gets SQLITE_BUSY at once when another connection writes, whatever the timeout: SQLite
    #   refuses to wait there because it could deadlock.
    #   The price: atomic() blocks are serialised as writers even when they only read. Ours are
    #   short and database-only: libvirt is read before a sync's or a sample's transaction,
    #   never inside it, and a sync's transaction is its constant number of writes (0.2 s for
    #   500 VMs, README). select_for_update is a no-op on SQLite; BEGIN IMMEDIATE gives what
    #   it is there for (one sync, one sample of a host at a time). Reads outside atomic()
    #   (pages) take no write lock.
    # - timeout: how long a writer waits for the lock (SQLite's busy timeout), also for the
    #   autocommit writes outside atomic() (each is its own implicit transaction) such as
    #   beat's last_run_at updates and a change's status updates.
    # - WAL: readers do not block the writer nor the writer the readers (pages keep loading
    #   while a sync writes). synchronous=NORMAL is the setting WAL is meant for: still
    #   consistent after a crash, only the last commits before a power loss may be lost.
    #   WAL is a property of the file, so it stays; re-asserting it per connection is a no-op.
    # PostgreSQL (production, CI) gets none of this: it has row locks and MVCC.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": float(os.environ.get("DATABASE_SQLITE_TIMEOUT", "20")),
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # Tests on SQLite use a file too, not Django's default in-memory database: the tests'
    # embedded workers (threads) share that through SQLite's shared cache, whose table locks
    # fail at once ("database table is locked") where the file's busy timeout waits. A
    # change's worker then died while a test's page read the table. A file behaves like the
    # portal's own database. (tests/conftest.py creates .run/.)
    # One file per test process: two test runs of one checkout must not share (or delete)
    # each other's database.
    DATABASES["default"]["TEST"] = {
        "NAME": os.environ.get(
            "DATABASE_SQLITE_TEST_NAME", str(BASE_DIR / ".run" / f"test-db-{os.getpid()}.sqlite3")
        )
    }
if os.environ.get("NUMAPORTAL_ON_HOST"):
    # An on-host worker has no database, whatever DATABASE_URL says: it reads its host and
    # answers through the broker; the central workers store (hosts.probing, hosts.onhost).
    # Django's dummy backend makes any query fail loudly ("settings.DATABASES is improperly
    # configured") instead of writing to a file nobody reads.
    DATABASES = {"default": {"ENGINE": "django.db.backends.dummy"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Serve static files from the apps directly (no collectstatic step for a first run);
# everything is vendored, nothing is loaded from a CDN.
WHITENOISE_USE_FINDERS = True
# Files served at the site's root: /favicon.ico (browsers ask for it on every page unless told
# otherwise) and /favicon.svg, vendored among the static files (templates/base.html links them).
WHITENOISE_ROOT = BASE_DIR / "numaportal" / "static" / "numaportal" / "favicon"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Login throttling (django-axes): after NUMAPORTAL_LOGIN_FAILURE_LIMIT failed logins in a row
# for one username from one address, that pair is locked out for NUMAPORTAL_LOGIN_LOCKOUT_MINUTES
# (429 and the lockout message on the login page; the admin's login alike). The pair, not the
# address alone, so a user mistyping behind a shared proxy does not lock out colleagues, and not
# the username alone, so nobody can lock another user out from elsewhere. Attempts while locked
# out are refused without extending the lock. A successful login clears the count. Admins unlock
# sooner: Admin -> Axes -> Access attempts (delete the row), or
# `manage.py axes_reset_username <name>`. The failures are rows in the database (AccessAttempt),
# shared by every web process. The client address is REMOTE_ADDR (no proxy headers are trusted).
# AxesStandaloneBackend needs the request: a caller of authenticate() without one (the test
# client's login(): pass request=HttpRequest()) is refused loudly rather than left unthrottled.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(os.environ.get("NUMAPORTAL_LOGIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(
    minutes=float(os.environ.get("NUMAPORTAL_LOGIN_LOCKOUT_MINUTES", "15"))
)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "web.views.login_locked_out"
# Every successful login is also an axes AccessLog row (username, address, user agent, login and
# logout times), which axes never deletes by itself: personal data about every user, and a table
# that grows with each login for ever. The beat entry "prune-login-logs" (numaportal.tasks) keeps
# NUMAPORTAL_LOGIN_LOG_DAYS of them, long enough to look into a suspicious login, through axes'
# own reset_logs (what `manage.py axes_reset_logs --age N` does by hand). The failures that count
# towards a lockout (AccessAttempt) are not touched: axes clears those after the cool-off.
NUMAPORTAL_LOGIN_LOG_DAYS = int(os.environ.get("NUMAPORTAL_LOGIN_LOG_DAYS", "30"))

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"

# Celery: Redis as broker. Results of our tasks live in the database (audit records), the
# result backend only serves short-lived diagnostics.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", CELERY_BROKER_URL)
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_TRACK_STARTED = True
CELERY_TASK_SOFT_TIME_LIMIT = int(os.environ.get("CELERY_TASK_SOFT_TIME_LIMIT", "300"))
CELERY_TASK_TIME_LIMIT = int(os.environ.get("CELERY_TASK_TIME_LIMIT", "360"))
# A task whose worker dies is re-delivered rather than lost.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A request publishes its task on commit: with Redis stopped or not answering, the publish
# fails within about two seconds (connect timeout, two quick retries) and the record says so
# (numaportal.queueing), instead of the request hanging while Celery retries.
CELERY_BROKER_CONNECTION_TIMEOUT = 2
# visibility_timeout (kombu's default, spelled out): a message a worker took (acks late) and
# did not acknowledge within it is handed to another worker. The periodic sweeps queue their
# per-host tasks with an ETA at most one interval (300 s) ahead (numaportal.spread): a worker
# holds such a message unacknowledged until its ETA, far below this, so none is run twice.
CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 2, "visibility_timeout": 3600}
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Periodic tasks live in django-celery-beat's tables. The defaults (numaportal.schedules) are
# created there after `migrate` only when missing, so an admin's edit of an interval stays;
# CELERY_BEAT_SCHEDULE would overwrite such edits every time beat starts, hence empty.
CELERY_BEAT_SCHEDULE: dict[str, dict] = {}

# Shared cache (also what tells the web page that beat and a worker are alive).
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": os.environ.get("CACHE_URL", "redis://127.0.0.1:6379/1"),
        "KEY_PREFIX": "numaportal",
        "TIMEOUT": 300,
        # Redis stopped or hung: a page's cache read fails in seconds (the status rows say
        # "cache unavailable"), never waits for ever.
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 5},
    }
}

# The libvirt lab started by `scripts/libvirt-lab` (make run / make test). When its daemon
# cannot be reached the portal falls back to libvirt's in-process test driver.
NUMAPORTAL_LAB_URI = os.environ.get("NUMAPORTAL_LAB_URI", "qemu:///system")
NUMAPORTAL_FALLBACK_URI = "test:///default"
# The NUMA lab (`scripts/numa-lab`): a 2-node hypervisor in a TCG guest, its libvirtd on a
# loopback-forwarded port; `make run` registers it as host "numalab".
NUMAPORTAL_NUMALAB_URI = os.environ.get(
    "NUMAPORTAL_NUMALAB_URI",
    f"qemu+tcp://127.0.0.1:{os.environ.get('NUMAPORTAL_NUMALAB_PORT', '16510')}/system",
)
NUMAPORTAL_LIBVIRT_TIMEOUT = float(os.environ.get("NUMAPORTAL_LIBVIRT_TIMEOUT", "15"))
# Per-task time limits (soft; the hard limit, which kills the worker's child process, comes
# NUMAPORTAL_HARD_LIMIT_GRACE s later) instead of the global CELERY_TASK_SOFT_TIME_LIMIT, so a
# host that stops answering holds a worker for its own bounded time, not 300 s. A sync is one
# open (at most NUMAPORTAL_LIBVIRT_TIMEOUT), a peer gone silent after it is dropped by libvirt's
# keepalive within about 20 s (numaportal.virt.connection), then the reads: four open timeouts.
# A connection test adds one open timeout (the test's child process) to its sync; a sample is
# one open and one call.
NUMAPORTAL_SYNC_TIME_LIMIT = float(
    os.environ.get("NUMAPORTAL_SYNC_TIME_LIMIT") or max(30.0, 4 * NUMAPORTAL_LIBVIRT_TIMEOUT)
)
NUMAPORTAL_CHECK_TIME_LIMIT = NUMAPORTAL_SYNC_TIME_LIMIT + NUMAPORTAL_LIBVIRT_TIMEOUT
NUMAPORTAL_SAMPLE_TIME_LIMIT = float(
    os.environ.get("NUMAPORTAL_SAMPLE_TIME_LIMIT") or max(10.0, NUMAPORTAL_LIBVIRT_TIMEOUT + 5)
)
NUMAPORTAL_HARD_LIMIT_GRACE = 10.0
# The periodic sweeps start each host's task at a stable offset within this many seconds
# (numaportal.spread), never more than the sweep's interval minus the task's hard time limit:
# the default spreads the 300 s sync over 300 - 70 = 230 s, the 60 s sample over 30 s.
NUMAPORTAL_SYNC_SPREAD_S = float(
    os.environ.get("NUMAPORTAL_SYNC_SPREAD_S")
    or max(0.0, 300 - NUMAPORTAL_SYNC_TIME_LIMIT - NUMAPORTAL_HARD_LIMIT_GRACE)
)
# The one directory a host URI's file parameters (?keyfile=, ?known_hosts=, ?pkipath=) may
# name files in, checked at registration after resolving '..' and symlinks: without it a URI
# could have the workers' ssh read any file they can (?keyfile=/etc/shadow).
NUMAPORTAL_URI_FILE_DIR = os.path.realpath(
    os.environ.get("NUMAPORTAL_URI_FILE_DIR") or os.path.expanduser("~/.ssh")
)
# libvirt connection attempts one process runs at once, of each kind (in-process opens; the
# connection tests of registration, each in a child process): one more fails at once instead
# of starting another thread that a host which never answers would keep.
NUMAPORTAL_LIBVIRT_CONNECT_SLOTS = int(os.environ.get("NUMAPORTAL_LIBVIRT_CONNECT_SLOTS", "4"))
# Changes: how long a second change to the same VM waits for the first one's lock before it
# fails ("another change to this VM is running"), and how long a change may stay queued before
# the reconciler decides its task was lost.
NUMAPORTAL_CHANGE_LOCK_WAIT = float(os.environ.get("NUMAPORTAL_CHANGE_LOCK_WAIT", "120"))
NUMAPORTAL_CHANGE_QUEUED_TIMEOUT = float(os.environ.get("NUMAPORTAL_CHANGE_QUEUED_TIMEOUT", "3600"))

# numastat sampling. An on-host worker (queue host.<name>) runs with NUMAPORTAL_ON_HOST=<name>
# and reads /sys and /proc under NUMAPORTAL_PROBE_ROOT ("/" in production; tests point it at a
# fixture tree). A worker refuses to probe a host other than its own: its /sys is not theirs.
NUMAPORTAL_ON_HOST = os.environ.get("NUMAPORTAL_ON_HOST", "")
NUMAPORTAL_PROBE_ROOT = os.environ.get("NUMAPORTAL_PROBE_ROOT", "/")
# The libvirt URI an on-host worker uses for its own host (qemu:///system inside the NUMA lab
# guest, whose portal-side URI is qemu+tcp://127.0.0.1:16510/system); empty: the host's URI.
NUMAPORTAL_ON_HOST_URI = os.environ.get("NUMAPORTAL_ON_HOST_URI", "")
# On-host workers have no database: they answer through the broker. Their answers are stored,
# and every sync, change and plan runs, on the central workers' queue (Celery's default).
NUMAPORTAL_CENTRAL_QUEUE = os.environ.get("NUMAPORTAL_CENTRAL_QUEUE", "celery")
# How long a central worker waits for an on-host worker's answer (numa_balancing read/write);
# the request expires unread after that, so a late worker never acts on it.
NUMAPORTAL_ON_HOST_WAIT = float(os.environ.get("NUMAPORTAL_ON_HOST_WAIT", "30"))
# How long a VM's page migration (memory_move without a binding) may take on its host.
# A page migration gives up before the change task's soft time limit would stop the task, so
# the record says the move timed out (and the host is read back) instead of the worker's limit.
NUMAPORTAL_MEMORY_MOVE_TIMEOUT = min(
    float(os.environ.get("NUMAPORTAL_MEMORY_MOVE_TIMEOUT", "240")),
    max(CELERY_TASK_SOFT_TIME_LIMIT - 60, 30),
)
# While a memory move runs, its progress (MiB moved so far) is read and recorded this often.
NUMAPORTAL_MEMORY_MOVE_PROGRESS_S = float(os.environ.get("NUMAPORTAL_MEMORY_MOVE_PROGRESS_S", "2"))
NUMAPORTAL_SAMPLE_INTERVAL = float(os.environ.get("NUMAPORTAL_SAMPLE_INTERVAL", "60"))
NUMAPORTAL_SAMPLE_SPREAD_S = float(
    os.environ.get("NUMAPORTAL_SAMPLE_SPREAD_S") or NUMAPORTAL_SAMPLE_INTERVAL / 2
)
#: A host whose last successful sync is older than this (s) is "stale" on the ops dashboard:
#: three periodic syncs (300 s each) missed.
NUMAPORTAL_HOST_STALE_AFTER = float(os.environ.get("NUMAPORTAL_HOST_STALE_AFTER", "900"))
NUMAPORTAL_SAMPLE_RAW_HOURS = float(os.environ.get("NUMAPORTAL_SAMPLE_RAW_HOURS", "48"))
NUMAPORTAL_ROLLUP_BUCKET_S = int(os.environ.get("NUMAPORTAL_ROLLUP_BUCKET_S", "900"))
NUMAPORTAL_ROLLUP_DAYS = float(os.environ.get("NUMAPORTAL_ROLLUP_DAYS", "90"))
# /metrics (Prometheus): scrapers send `Authorization: Bearer <token>`; empty: only logged-in
# users with hosts.view_host may read it. Set it in the environment, never in git.
NUMAPORTAL_METRICS_TOKEN = os.environ.get("NUMAPORTAL_METRICS_TOKEN", "").strip()
# numaportal_vm_memory_bytes: "kind" (per VM, cell and numastat -p kind: 4 series per cell a
# VM has memory on), "total" (one per VM and cell, kind="total") or "off" (web/metrics.py).
NUMAPORTAL_METRICS_VM_MEMORY = os.environ.get("NUMAPORTAL_METRICS_VM_MEMORY", "kind").strip()

# The REST API (api/): session login for the browser (CSRF kept), knox tokens for scripts
# ("Authorization: Token <key>"; stored hashed, revocable, expiring). The roles are the pages'
# (api.permissions); errors are JSON in the forms' words (api.errors).
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "knox.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["api.permissions.Roles"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "api.errors.exception_handler",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
}
# A token lives NUMAPORTAL_API_TOKEN_DAYS (a script's token should not outlive its purpose by
# years); its user revokes it sooner from their tokens page, an admin from the admin.
NUMAPORTAL_API_TOKEN_DAYS = float(os.environ.get("NUMAPORTAL_API_TOKEN_DAYS", "90"))
REST_KNOX = {
    "TOKEN_TTL": timedelta(days=NUMAPORTAL_API_TOKEN_DAYS),
    "AUTH_HEADER_PREFIX": "Token",
    "AUTO_REFRESH": False,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "NUMA Portal API",
    "DESCRIPTION": "Hosts, VMs, numastat, changes and balancing: the pages' services, as JSON.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and its docs page for the viewer role (a session or a token), like every page.
    "SERVE_PERMISSIONS": ["api.permissions.Roles"],
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI's files from the drf-spectacular-sidecar package, served as static files.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Every operation's error responses (401/403/404/400, JSON in the forms' words) as well.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "api.schema_hooks.document_errors",
    ],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    # A 403 is one line ("forbidden: user=... path=... reason=..."), not a traceback.
    "filters": {"forbidden_one_line": {"()": "web.logfilters.ForbiddenInOneLine"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"django.request": {"filters": ["forbidden_one_line"]}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}
