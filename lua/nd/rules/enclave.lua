-- nd.rules.enclave — what dies inside the enclave: nitrodiag-init's own lines (`[init] check …`, `[init] cannot
-- run …`, `[init] APP exited …`) and what applications commonly print when they fail in an enclave (no loopback, no
-- network but vsock, no CA bundle, a hostname sent to the wrong vsock-proxy, a KMS Recipient without a usable public
-- key, a panic at start-up). The input is an enclave console (debug mode) or the log channel as nitrodiag-logd writes
-- it (`… seq=12 stderr: text`): the rules read both.
-- Their findings (ENCLAVE_APP_*, ENCLAVE_LOOPBACK_DOWN, …) are registered in nd.findings ("inside the enclave").

-- The application's own line: a logd line's text after "seq=N stdout: " (or stderr), or a console line that is not
-- init's, not the kernel's.
local function text_of(l)
  return l:match(" seq=%d+ stdout: (.*)$") or l:match(" seq=%d+ stderr: (.*)$") or l:match(" seq=%d+ init: (.*)$") or l
end
local function app_lines(f)
  local out = {}
  for _, l in ipairs(f.lines) do
    local t = text_of(l)
    if not t:find("^%[init%]") and not t:find("^%[%s*%d+%.%d+%]") and not l:find(" logd: ", 1, true)
      and not t:find("^%[vmtest%]") and not f:cli_line(t) then
      out[#out + 1] = t
    end
  end
  return out
end
local function app_line(f, ...)
  local pats = { ... }
  for _, t in ipairs(app_lines(f)) do
    for _, p in ipairs(pats) do
      if t:find(p) then return t end
    end
  end
end
local function init_line(f, pat)
  for _, l in ipairs(f.lines) do
    local t = text_of(l)
    local c = table.pack(t:match(pat))
    if c[1] ~= nil then return t, table.unpack(c, 1, c.n) end
  end
end
-- The last application line before init's exit line (what it said last).
local function last_words(f)
  local last
  for _, l in ipairs(f.lines) do
    local t = text_of(l)
    if t:find("^%[init%] .- exited ") or t:find("^child exited ") then break end
    if not t:find("^%[init%]") and not t:find("^%[%s*%d+%.%d+%]") and not l:find(" logd: ", 1, true)
      and not t:find("^%[vmtest%]") and t:find("%S") then last = t end
  end
  return last
end
local function short(s, n) s = s or "" if #s > (n or 160) then return s:sub(1, n or 160) .. "…" end return s end

return { area = "enclave", rules = {
  { id = "init-interpreter-missing", finding = "ENCLAVE_APP_INTERPRETER_MISSING", confidence = 0.97,
    match = function(f)
      local l, app, interp = init_line(f, "^%[init%] check command fail: (%S+): script; its interpreter (%S+) %(from #!%)")
      if not l then l, app, interp = init_line(f, "^%[init%] check command fail: (%S+): script for `[^`]-`, and (%S+) is not on PATH") end
      if l then return { vars = { app = app, interp = interp }, evidence = { l, (init_line(f, "^%[init%] cannot run .*")) } } end
    end },
  { id = "init-loader-missing", finding = "ENCLAVE_APP_LOADER_MISSING", confidence = 0.97,
    match = function(f)
      local l, app, loader = init_line(f, "^%[init%] check command fail: (%S+): dynamically linked, and its loader (%S+) is missing")
      if l then return { vars = { app = app, loader = loader }, evidence = { l, (init_line(f, "^%[init%] cannot run .*")) } } end
    end },
  { id = "init-not-found", finding = "ENCLAVE_CMD_NOT_FOUND", confidence = 0.95,
    match = function(f)
      local l, app = init_line(f, "^%[init%] check command fail: (%S+): No such file or directory$")
      if not l then l, app = init_line(f, "^%[init%] check command fail: (%S+) is not on PATH") end
      if not l and not init_line(f, "^%[init%] check command fail") then
        l, app = init_line(f, "^%[init%] cannot run (%S+): No such file or directory$")
      end
      if l then
        return { vars = { detail = app .. " does not exist in the image" }, evidence = { l, (init_line(f, "^%[init%] cannot run .*")) } }
      end
    end },
  -- The AWS bootstrap init (aws-nitro-enclaves-sdk-bootstrap, init/init.c) when the image has no nitrodiag-init: it
  -- execs the command with execvpe and, on failure, prints `execvpe: CMD: <strerror>` (warn2 + perror); glibc's
  -- execvpe runs a file it cannot exec through /bin/sh, so in an image without a shell a missing file, a missing
  -- #! interpreter or loader, and a non-executable format all read "No such file or directory".
  { id = "bootstrap-execvpe-enoent", finding = "ENCLAVE_CMD_NOT_FOUND", confidence = 0.9,
    match = function(f)
      local l, app = f:line("^execvpe: (%S+): No such file or directory")
      if l then
        return { vars = { detail = app .. " (or, for a script, its #! interpreter; for a dynamic binary, its loader; " ..
          "run it under nitrodiag-init to know which)" }, evidence = { l, f:line("reboot: Restarting system") } }
      end
    end },
  { id = "bootstrap-execvpe-other", finding = "ENCLAVE_APP_CANNOT_EXEC", confidence = 0.88,
    match = function(f)
      local l, app, why = f:line("^execvpe: (%S+): (.+)$")
      if l and why ~= "No such file or directory" then
        return { vars = { detail = app .. ": " .. why }, evidence = { l } }
      end
    end },
  { id = "bootstrap-child-signal", finding = "ENCLAVE_APP_KILLED_BY_SIGNAL", confidence = 0.7,
    match = function(f)
      local l = f:line("^child exited by signal$")
      if l and not init_line(f, "^%[init%] .- exited ") then
        local last = last_words(f)
        return { vars = { app = "the image's command", signal = "a signal", core = "", secs = "?",
          detail = (last and ("; its last line: " .. short(last, 120)) or "") ..
            " (the bootstrap init does not say which signal; nitrodiag-init does)" }, evidence = { l, last } }
      end
    end },
  { id = "bootstrap-child-error", finding = "ENCLAVE_APP_EXITED", confidence = 0.5,
    match = function(f)
      local l = f:line("^child exited with error$")
      if l and not init_line(f, "^%[init%] .- exited ") and not f:line("^execvpe: ") then
        local last = last_words(f)
        return { vars = { name = f.host.name or "enclave", severity = "fail",
          detail = "the image's command exited with a non-zero status" .. (last and (" after printing: " .. short(last, 120)) or "") ..
            ", and the enclave rebooted" }, evidence = { l, last, f:line("reboot: Restarting system") } }
      end
    end },
  { id = "init-cannot-exec", finding = "ENCLAVE_APP_CANNOT_EXEC", confidence = 0.9,
    match = function(f)
      local l, d = init_line(f, "^%[init%] check command fail: (.*: not executable %(mode %d+%))")
      if not l then l, d = init_line(f, "^%[init%] check command fail: (.*: an ELF for .*)") end
      if not l then l, d = init_line(f, "^%[init%] check command fail: (.*: neither an ELF binary nor a #! script.*)") end
      if not l then l, d = init_line(f, "^%[init%] check command fail: (.*: a 32%-bit ELF.*)") end
      if not l then l, d = init_line(f, "^%[init%] cannot run (%S+: Exec format error)") end
      if not l then l, d = init_line(f, "^%[init%] cannot run (%S+: Permission denied)") end
      if l then return { vars = { detail = d }, evidence = { l } } end
    end },
  { id = "app-loopback-down", finding = "ENCLAVE_LOOPBACK_DOWN", confidence = 0.92,
    match = function(f)
      local l = app_line(f, "[Cc]annot assign requested address", "can't assign requested address", "EADDRNOTAVAIL",
        "AddrNotAvailable", "Errno 99")
      local lo_down = init_line(f, "^%[init%] check loopback warn: lo is down")
      local local_addr = f:has("127.0.0.1") or f:has("localhost") or f:has("::1")
      if not l then
        local u = app_line(f, "[Nn]etwork is unreachable", "ENETUNREACH", "NetworkUnreachable")
        if u and (u:find("127%.0%.0%.1") or u:find("localhost")) then l = u end
      end
      if l and (lo_down or local_addr) then
        return { vars = { detail = short(l) }, evidence = { l, lo_down } }
      end
    end },
  { id = "app-tls-hostname", finding = "ENCLAVE_TLS_WRONG_PROXY_HOST", confidence = 0.88,
    match = function(f)
      -- Go's crypto/x509 HostnameError: "x509: certificate is valid for <names joined by \", \">, not <host>" (a
      -- paste may cut the list before "not"); rustls NotValidForName; OpenSSL/Python "Hostname mismatch"
      local l = app_line(f, "certificate is valid for [^,]+, not ", "x509: certificate is valid for ", "[Hh]ostname mismatch", "doesn't match",
        "no alternative certificate subject name matches", "NotValidForName", "does not match the target host name",
        "certificate is not valid for")
      if l then return { vars = { detail = short(l) }, evidence = { l } } end
    end },
  { id = "app-tls-no-ca", finding = "ENCLAVE_TLS_NO_CA_BUNDLE", confidence = 0.88,
    match = function(f)
      local l = app_line(f, "certificate signed by unknown authority", "UnknownIssuer", "unable to get local issuer certificate",
        "CERTIFICATE_VERIFY_FAILED", "PKIX path building failed", "SSL certificate problem", "self.signed certificate in certificate chain")
      if l and not l:find("AWS_IO_", 1, true) then
        local ca = init_line(f, "^%[init%] check ca%-bundle warn: .*")
        return { vars = { detail = short(l), ca = ca and "; nitrodiag-init found no CA bundle in the image" or "" },
          evidence = { l, ca }, confidence = ca and 0.95 or 0.85 }
      end
    end },
  { id = "app-kms-recipient-no-key", finding = "KMS_RECIPIENT_NO_PUBLIC_KEY", confidence = 0.8,
    match = function(f)
      local l = app_line(f, "[Aa]ttestation document.*[Pp]ublic ?[Kk]ey.*missing", "[Aa]ttestation document.*no [Pp]ublic ?[Kk]ey",
        "[Aa]ttestation document.*does not contain.*[Pp]ublic ?[Kk]ey", "[Rr]ecipient.*[Pp]ublic ?[Kk]ey.*missing",
        "public_key.*null.*[Rr]ecipient", "[Rr]ecipient.*without.*[Pp]ublic ?[Kk]ey")
      if l then return { vars = { detail = short(l) }, evidence = { l } } end
    end },
  { id = "app-kms-recipient-encoding", finding = "KMS_RECIPIENT_KEY_ENCODING", confidence = 0.8,
    match = function(f)
      local l = app_line(f, "[Rr]ecipient.*PEM", "[Rr]ecipient.*PKCS#?1", "[Rr]ecipient.*SubjectPublicKeyInfo",
        "[Pp]ublic ?[Kk]ey.*not.*DER", "[Aa]ttestation.*[Pp]ublic ?[Kk]ey.*[Ii]nvalid", "[Rr]ecipient.*[Ii]nvalid.*[Pp]ublic ?[Kk]ey")
      if l then return { vars = { detail = short(l) }, evidence = { l } } end
    end },
  { id = "app-direct-network", finding = "ENCLAVE_NO_DIRECT_NETWORK", confidence = 0.82,
    match = function(f)
      local l = app_line(f, "169%.254%.169%.254", "IMDS", "[Ii]nstance [Mm]etadata")
      local what = "the instance metadata service (IMDS)"
      if not l then
        l = app_line(f, "Temporary failure in name resolution", "Name or service not known", "[Cc]ould not resolve host",
          "no such host", "EAI_AGAIN", "ENOTFOUND", "failed to lookup address information", "nodename nor servname",
          "[Nn]etwork is unreachable", "ENETUNREACH", "No route to host")
        what = "a remote host"
        if l and (l:find("127%.0%.0%.1") or l:find("localhost")) then l = nil end
      end
      if l then return { vars = { what = what, detail = short(l) }, evidence = { l } } end
    end },
  { id = "app-tcp-server", finding = "ENCLAVE_TCP_SERVER_NOT_VSOCK", confidence = 0.5,
    match = function(f)
      local l = app_line(f, "[Ll]istening on:? *[%w%.:/]*0%.0%.0%.0:%d+", "[Ll]istening on:? *[%w%.:/]*127%.0%.0%.1:%d+",
        "[Ll]istening on:? *[%w%.:/]*%[::%]:%d+", "Running on http://", "[Ll]istening on port %d+", "[Ss]erver started on port %d+",
        "[Ll]istening at http://", "bound to 0%.0%.0%.0:%d+")
      if l and not l:lower():find("vsock", 1, true) then return { vars = { detail = short(l) }, evidence = { l } } end
    end },
  -- Below nd.rules.console's app-failed-reboot (0.75): when the console also shows the reboot, "failed, then the
  -- enclave rebooted" leads and this names the panic; under nitrodiag-init (no reboot) or in the log stream, this leads.
  { id = "app-panic", finding = "ENCLAVE_APP_PANIC_AT_START", confidence = 0.72,
    match = function(f)
      local l = app_line(f, "thread '.-' panicked at", "^panic: ", "^fatal error: ", "Traceback %(most recent call last%)",
        "Exception in thread \"main\"", "Unhandled exception", "^Uncaught ", "terminate called after throwing")
      if l then
        -- the line after a Traceback / panic header is the reason: take the last line of the block
        local lines, reason = app_lines(f), nil
        for i, t in ipairs(lines) do
          if t == l then
            for j = i + 1, math.min(#lines, i + 40) do
              if lines[j]:find("^%w[%w%.]*Error") or lines[j]:find("^%w[%w%.]*Exception") then reason = lines[j] end
            end
            break
          end
        end
        return { vars = { detail = short(reason or l) }, evidence = { l, reason } }
      end
    end },
  { id = "init-killed-by-signal", finding = "ENCLAVE_APP_KILLED_BY_SIGNAL", confidence = 0.75,
    match = function(f)
      local l, app, sig, rest = init_line(f, "^%[init%] (%S+) exited signal=%d+ %((SIG%u+)%)(.*)$")
      if not l then return nil end
      if (sig == "SIGTERM" or sig == "SIGINT" or sig == "SIGHUP") and init_line(f, "^%[init%] forwarding " .. sig) then
        return nil -- stopped on purpose: nitro-cli terminate-enclave or an operator
      end
      local secs = rest:match("after ([%d%.]+) s") or "?"
      local last = last_words(f)
      return { vars = { app = app, signal = sig, core = rest:find("core dumped", 1, true) and " (core dumped)" or "",
        secs = secs, detail = last and ("; its last line: " .. short(last, 120)) or "" }, evidence = { l, last } }
    end },
  { id = "init-exit-code", finding = "ENCLAVE_APP_EXITED", confidence = 0.55,
    match = function(f)
      local l, app, rc = init_line(f, "^%[init%] (%S+) exited rc=(%d+)")
      if not l or rc == "0" or (rc == "127" and init_line(f, "^%[init%] cannot run ")) then return nil end
      local last = last_words(f)
      return { vars = { name = f.host.name or "enclave", severity = "fail",
        detail = string.format("%s exited with status %s%s", app, rc, last and (" after printing: " .. short(last, 120)) or "") },
        evidence = { l, last } }
    end },
  { id = "log-lines-dropped", finding = "ENCLAVE_LOG_LINES_DROPPED", confidence = 0.3, secondary = true,
    match = function(f)
      local l, n = init_line(f, "^%[init%] log channel: (%d+) line%(s%) dropped so far")
      if not l then
        for _, x in ipairs(f.lines) do
          local m = x:match(" logd: (%d+) line%(s%) lost in the enclave")
          if m then l, n = x, m break end
        end
      end
      if l then return { vars = { detail = n .. " line(s) were dropped in the enclave" }, evidence = { l } } end
    end },
} }
