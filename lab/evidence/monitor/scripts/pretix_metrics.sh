# Fallback when the host cannot reach a web instance's edge address: a stdlib python loop inside the web
# container asks gunicorn on 127.0.0.1:8000, with the credentials from its own environment (never argv).
exec python3 -I -c '
import base64, os, select, sys, time, urllib.request
from urllib.parse import urlsplit
interval, end = float(sys.argv[1]), time.monotonic() + float(sys.argv[2])
host = urlsplit(os.environ.get("PRETIX_PRETIX_URL", "")).netloc or "localhost"
cred = os.environ["PRETIX_METRICS_USER"] + ":" + os.environ["PRETIX_METRICS_PASSPHRASE"]
headers = {"Host": host, "Authorization": "Basic " + base64.b64encode(cred.encode()).decode()}
next_t = time.monotonic()
while time.monotonic() < end:
    t0, p0 = time.time(), time.perf_counter()
    try:
        req = urllib.request.Request("http://127.0.0.1:8000/metrics", headers=headers)
        body = urllib.request.urlopen(req, timeout=10).read().decode()
        sys.stdout.write("#S %f\nscrape_seconds %f\n%s#E\n" % (t0, time.perf_counter() - p0, body))
    except Exception as e:
        sys.stdout.write("#S %f\n#FAIL %s\n#E\n" % (t0, type(e).__name__))
    sys.stdout.flush()
    next_t += interval
    ready, _, _ = select.select([0], [], [], max(0.0, next_t - time.monotonic()))
    if ready and not os.read(0, 4096):
        break
' "$1" "$2"
