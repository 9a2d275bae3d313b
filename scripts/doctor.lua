-- doctor: is this host ready to run enclaves that get keys from KMS? The checks of the old Rust doctor and more,
-- each independent (no fail-fast: every check runs and reports), each failure with a stable code and a remediation.
-- Codes are listed in docs/doctor.md; `nitrodiag --json doctor` is a stable document for monitoring.
local proc = require "nd.proc"
local host = require "nd.host"
local fs = require "nd.fs"
local json = require "nd.json"
local http = require "nd.http"
local checks = require "nd.checks"
local VSOCK_PROXY_YAML = "/etc/nitro_enclaves/vsock-proxy.yaml"

local function imds_base(args)
  return (args.imds or host.getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT") or "http://169.254.169.254"):gsub("/+$", "")
end

-- HTTP Date (RFC 7231: "Sun, 22 Nov 2026 20:00:00 GMT") -> epoch seconds
local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7, Aug = 8, Sep = 9, Oct = 10, Nov = 11, Dec = 12 }
local function http_date(s)
  local d, mon, y, hh, mm, ss = (s or ""):match("%a+, (%d+) (%a+) (%d+) (%d+):(%d+):(%d+) GMT")
  if not d or not MONTHS[mon] then return nil end
  -- days from civil (Howard Hinnant), UTC without os.time's local-time conversion
  local yy, m = tonumber(y), MONTHS[mon]
  if m <= 2 then yy = yy - 1 end
  local era = yy // 400
  local yoe = yy - era * 400
  local mp = (m + 9) % 12
  local doy = (153 * mp + 2) // 5 + tonumber(d) - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  local days = era * 146097 + doe - 719468
  return days * 86400 + tonumber(hh) * 3600 + tonumber(mm) * 60 + tonumber(ss)
end

return {
  description = "Check the host is ready for enclaves and KMS: device, allocator, enclaves, IMDSv2, clock, KMS proxy, vsock-proxy",
  categories = { "diagnosis", "canned" },
  args = {
    { name = "min_memory", type = "integer", default = 2048, help = "MiB the allocator should reserve at least" },
    { name = "min_cpus", type = "integer", default = 2, help = "CPUs the allocator should reserve at least" },
    { name = "imds", type = "string", help = "IMDS base URL (default http://169.254.169.254 or $AWS_EC2_METADATA_SERVICE_ENDPOINT)" },
    { name = "region", type = "string", help = "AWS region for the KMS endpoint (default: from IMDS or $AWS_REGION)" },
    { name = "proxy_unit", type = "string", default = "kms-proxy-host", help = "systemd unit of the KMS proxy" },
    { name = "proxy_metrics", type = "string", default = "http://127.0.0.1:9108/metrics", help = "the KMS proxy's /metrics URL" },
    { name = "max_skew", type = "number", default = 60, help = "seconds of clock skew tolerated (SigV4 fails past 300)" },
  },
  deadline = 60,
  steps = {
    -- the host's own checks, shared with diag10 (lua/nd/checks.lua)
    { name = "device and group", timeout = 5, run = checks.device },
    { name = "allocator", timeout = 20, run = checks.allocator },
    { name = "artifacts path (E51)", timeout = 5, run = checks.artifacts_env },
    { name = "enclaves", timeout = 30, run = checks.running_enclaves },

    { name = "IMDSv2 and role", timeout = 15,
      run = function(s)
        if s.sim and not s.args.imds then s:skip("no instance metadata on the simulated host (pass imds=URL)") end
        local base = imds_base(s.args)
        local tok, err, code = http.request{ method = "PUT", url = base .. "/latest/api/token", timeout = 2,
          headers = { ["X-aws-ec2-metadata-token-ttl-seconds"] = "21600" } }
        if not tok or tok.status ~= 200 then
          s:finding{ code = "IMDS_UNREACHABLE", severity = "fail",
            message = "IMDSv2 token request failed: " .. (tok and ("HTTP " .. tok.status) or tostring(err)),
            evidence = { "PUT " .. base .. "/latest/api/token" },
            remediation = "check the instance metadata options (HttpEndpoint enabled, HttpPutResponseHopLimit ≥ 1; 2 in containers)" }
          return
        end
        s.data.imds_date = tok.headers.date
        local H = { ["X-aws-ec2-metadata-token"] = tok.body }
        local region = http.request{ url = base .. "/latest/meta-data/placement/region", headers = H, timeout = 2 }
        if region and region.status == 200 then s.data.region = region.body end
        local roles = http.request{ url = base .. "/latest/meta-data/iam/security-credentials/", headers = H, timeout = 2 }
        if not roles or roles.status ~= 200 or roles.body == "" then
          s:finding{ code = "NO_INSTANCE_ROLE", severity = "fail", message = "no IAM role is attached to the instance",
            remediation = "attach an instance profile whose role may call kms:Decrypt / kms:GenerateDataKey on the key" }
          return
        end
        local role = roles.body:match("^[^\n]+")
        local creds = http.request{ url = base .. "/latest/meta-data/iam/security-credentials/" .. role, headers = H, timeout = 2 }
        local doc = creds and creds.status == 200 and json.decode(creds.body)
        if not doc or doc.Code ~= "Success" then
          s:finding{ code = "ROLE_CREDENTIALS_FAILED", severity = "fail", message = "role " .. role .. ": no credentials",
            remediation = "IAM eventual consistency after attaching a role can take a minute; otherwise check the instance profile" }
          return
        end
        -- never keep or print the credentials themselves
        s:ok(string.format("role %s, credentials expire %s%s", role, tostring(doc.Expiration),
          s.data.region and (", region " .. s.data.region) or ""))
      end },

    { name = "clock", timeout = 10,
      run = function(s)
        local date = s.data.imds_date
        if not date then s:skip("no trusted time source reached (IMDS)") end
        local remote = http_date(date)
        if not remote then s:skip("unreadable Date header: " .. date) end
        local now = os.time()
        local skew = now - remote
        s.data.skew = skew
        if math.abs(skew) > 300 then
          s:finding{ code = "CLOCK_SKEW", severity = "fail",
            message = string.format("the clock is %+d s off: SigV4 requests to KMS are rejected past 5 minutes", skew),
            remediation = "enable chrony with the Amazon Time Sync Service (169.254.169.123)" }
        elseif math.abs(skew) > s.args.max_skew then
          s:finding{ code = "CLOCK_SKEW", severity = "warn", message = string.format("the clock is %+d s off", skew),
            remediation = "enable chrony with the Amazon Time Sync Service (169.254.169.123)" }
        else
          s:ok(string.format("skew %+d s", skew))
        end
      end },

    { name = "KMS proxy", timeout = 15,
      run = function(s)
        local st = proc.run{ "systemctl", "status", "--no-pager", s.args.proxy_unit, timeout = 10 }
        if st and st.exit_code == 4 then
          s:skip(s.args.proxy_unit .. " is not installed on this host (no KMS proxy)")
        end
        local state = checks.service_state(s.args.proxy_unit)
        if state ~= "active" then
          s:finding{ code = "KMS_PROXY_NOT_RUNNING", severity = "fail", message = s.args.proxy_unit .. " is " .. state,
            remediation = "sudo systemctl enable --now " .. s.args.proxy_unit .. " (see docs/kms-proxy.md)" }
          return
        end
        local r, err = http.request{ url = s.args.proxy_metrics, timeout = 3 }
        if not r or r.status ~= 200 then
          s:finding{ code = "KMS_PROXY_NOT_ANSWERING", severity = "fail",
            message = "the KMS proxy does not answer on " .. s.args.proxy_metrics .. ": " .. (r and ("HTTP " .. r.status) or tostring(err)),
            remediation = "journalctl -u " .. s.args.proxy_unit .. "; check metrics_listen in its config" }
          return
        end
        local inflight = r.body:match("\nkms_proxy_in_flight (%d+)") or r.body:match("in_flight%S* (%d+)")
        s:ok("active and answering" .. (inflight and (", " .. inflight .. " in flight") or ""))
      end },

    { name = "vsock-proxy allowlist", timeout = 5,
      run = function(s)
        local text = fs.read(host.path(VSOCK_PROXY_YAML))
        if not text then s:skip(VSOCK_PROXY_YAML .. " is not there (no vsock-proxy on this host)") end
        local region = s.args.region or s.data.region or host.getenv("AWS_REGION") or host.getenv("AWS_DEFAULT_REGION")
        local allowed = {}
        for addr in text:gmatch("address:%s*([%w%.%-]+)") do allowed[#allowed + 1] = addr end
        local want = region and ("kms." .. region .. ".amazonaws.com")
        local found = false
        for _, a in ipairs(allowed) do
          if (want and (a == want or a == ("kms-fips." .. region .. ".amazonaws.com"))) or (not want and a:match("^kms")) then found = true end
        end
        if not found then
          s:finding{ code = "VSOCK_PROXY_NOT_ALLOWED", severity = "fail",
            message = (want or "no KMS endpoint") .. " is not in the vsock-proxy allowlist",
            evidence = { VSOCK_PROXY_YAML .. ": " .. table.concat(allowed, ", ") },
            remediation = "add `- {address: " .. (want or "kms.<region>.amazonaws.com") .. ", port: 443}` to the allowlist and restart nitro-enclaves-vsock-proxy" }
          return
        end
        s:ok((want or "a KMS endpoint") .. " is allowed")
      end },
  },
}
