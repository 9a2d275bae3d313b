-- bundle — open a nitrodiag bundle: list its contents, show its report, verify every SHA-256 in its manifest.
--
--   nitrodiag bundle nitrodiag-diag10-ip-10-0-0-1-20261122T194709Z.tar.gz
--
-- Reads the archive once with the core reader (libarchive; nothing is extracted to disk), hashing every member.
-- Fails (exit 1) when a member listed in the manifest is missing, has another size or hash, when the archive holds
-- a member the manifest does not list, or when there is no manifest at all. The verdict is about this check, and
-- says WARN when the bundled run itself failed or was interrupted (its own verdict is shown). Given several files
-- (a glob such as nitrodiag-diag10-*.tar.gz), it opens the newest and lists the others. This checks INTEGRITY only:
-- whoever can change a member can change the manifest too. With key=FILE it also checks the bundle's signature
-- (manifest.sig, written with --sign-key): an HMAC secret, or the signer's PEM public key/certificate
-- (docs/bundle.md). A partial bundle (<name>.partial.tar.gz, kept from a run that was killed) is listed up to where
-- it ends.
local bundle = require "nd.bundle"
local uv = require "luv"

local text = {}
local function out(line) text[#text + 1] = line or "" end

local function human(n)
  n = tonumber(n) or 0
  if n < 1024 then return string.format("%d B", n) end
  if n < 1024 * 1024 then return string.format("%.1f KiB", n / 1024) end
  if n < 1024 * 1024 * 1024 then return string.format("%.1f MiB", n / 1048576) end
  return string.format("%.2f GiB", n / 1073741824)
end

return {
  name = "bundle",
  description = "Open a diagnostic bundle: list its contents, show its report, verify every sha256 in its manifest",
  categories = { "bundle" },
  args = {
    { name = "file", type = "string", positional = 1, help = "the bundle (.tar.gz) to open" },
    { name = "more", type = "rest", help = "more bundles (a glob's other matches): the newest of all is opened" },
    { name = "report", type = "boolean", default = true, help = "show report.md" },
    { name = "key", type = "string", help = "check the signature with this key file (HMAC secret, or PEM public key, certificate or private key)" },
  },
  deadline = 600,
  collect = false,
  steps = {
    { name = "read", timeout = 300, required = true,
      run = function(s)
        local path = s.args.file
        if not path or path == "" then
          s:usage("no bundle given: nitrodiag bundle FILE.tar.gz")
        end
        if #s.args.more > 0 then
          -- several matches: the newest (by modification time, then by name: the names carry a UTC timestamp)
          local all = { path }
          for _, p in ipairs(s.args.more) do all[#all + 1] = p end
          local function mtime(p)
            local st = uv.fs_stat(p)
            return st and (st.mtime.sec + st.mtime.nsec / 1e9) or -1
          end
          table.sort(all, function(x, y)
            local mx, my = mtime(x), mtime(y)
            if mx ~= my then return mx > my end
            return x > y
          end)
          path = all[1]
          s.args.file = path
          out(string.format("%d bundles given; opening the newest: %s", #all, path))
          for i = 2, #all do out("  also: " .. all[i]) end
          out()
        end
        s:progress("reading and hashing " .. path)
        local c, err = bundle.read(path, { key = s.args.key })
        if not c then
          s:finding{ code = "BUNDLE-UNREADABLE", severity = "fail", message = err,
                     remediation = "check the path; a truncated download or a copy of a half-written file cannot be read" }
          s:fail(err)
          return
        end
        s.data.c = c
        if c.partial then
          s:finding{ code = "BUNDLE-PARTIAL", severity = "warn",
                     message = "a partial bundle (a run that was killed): " .. tostring(c.partial_reason),
                     remediation = "what is listed was collected before the kill; it has no manifest, so nothing can be verified" }
        end
        s:ok(string.format("%d members in %s/%s", #c.members, c.topdir or "?", c.partial and " (partial)" or ""))
      end },
    { name = "list", timeout = 10,
      run = function(s)
        local c = s.data.c
        local m = c.manifest or {}
        local by_path = {}
        for _, a in ipairs(m.artifacts or {}) do if type(a.path) == "string" then by_path[a.path] = a end end
        out(string.format("Bundle %s — runbook %s on %s, created %s%s", s.args.file, tostring(m.runbook or "?"),
          tostring(m.host or "?"), tostring(m.created_at or "?"),
          m.interrupted == true and ("  [INTERRUPTED: " .. tostring(m.interrupt_reason or "?") .. "]") or ""))
        out()
        out(string.format("  %10s  %-8s  %-5s  %s", "size", "status", "trunc", "member"))
        for _, mem in ipairs(c.members) do
          local a = by_path[mem.name]
          local rel = mem.name:match("^[^/]*/(.*)$") or mem.name
          out(string.format("  %10s  %-8s  %-5s  %s", human(mem.size), a and a.status or "-",
            a and (a.truncated == true and "yes" or "") or "", rel))
        end
        local notcollected = {}
        for _, a in ipairs(m.artifacts or {}) do
          if type(a.sha256) ~= "string" then notcollected[#notcollected + 1] = a end
        end
        if #notcollected > 0 then
          out()
          out("  not collected:")
          for _, a in ipairs(notcollected) do
            out(string.format("    %-30s %-8s %s", a.name, tostring(a.status), type(a.error) == "string" and a.error or ""))
          end
        end
        out()
        -- The bundled run's own verdict: a FAIL or an interrupted run is not a PASS here either.
        local v = type(m.verdict) == "string" and m.verdict or nil
        if m.interrupted == true or v == "fail" or v == "error" or v == "timeout" then
          s:finding{ code = "BUNDLED_RUN_FAILED", severity = "warn",
            message = string.format("the bundled %s run's verdict: %s%s", tostring(m.runbook or "?"), (v or "?"):upper(),
              m.interrupted == true and (" (interrupted: " .. tostring(m.interrupt_reason or "?") .. ")") or ""),
            remediation = "its findings are in the report below (report.md)" }
        end
        s:ok(string.format("%d members, %d not collected; the run's verdict: %s", #c.members, #notcollected,
          (v or "unknown"):upper()))
      end },
    { name = "report", timeout = 10,
      run = function(s)
        local c = s.data.c
        if not c.report then s:warn("the bundle has no report.md") return end
        if s.args.report then
          out(c.report)
        end
        s:ok("report.md: " .. #c.report .. " bytes")
      end },
    { name = "verify", timeout = 10,
      run = function(s)
        local c = s.data.c
        if c.partial and not c.manifest then
          out("not verified: a partial bundle has no manifest")
          s:warn("not verifiable: partial bundle without a manifest")
          return
        end
        if #c.problems > 0 then
          local ev = {}
          for _, p in ipairs(c.problems) do ev[#ev + 1] = p.name .. ": " .. p.problem end
          s:finding{ code = "BUNDLE-MISMATCH", severity = "fail",
                     message = string.format("%d member(s) do not match the manifest", #c.problems), evidence = ev,
                     remediation = "the bundle was modified or damaged after it was written: ask for a fresh copy" }
          out("verification FAILED:")
          for _, l in ipairs(ev) do out("  " .. l) end
          s:fail(string.format("%d problem(s); %d member(s) verified", #c.problems, c.verified))
          return
        end
        out(string.format("verified: all %d members match the SHA-256 in manifest.json", c.verified))
        s:ok(string.format("%d sha256 verified", c.verified))
      end },
    { name = "signature", timeout = 10,
      run = function(s)
        local sig = s.data.c.signature or {}
        local what = sig.present and string.format("%s, key %s", tostring(sig.algorithm), tostring(sig.key_id)) or nil
        if sig.verified == true then
          out("signature: verified (" .. what .. "): the manifest, hence every member, is as the key holder wrote it")
          s:ok("signature verified (" .. what .. ")")
        elseif sig.verified == false then
          s:finding{ code = "BUNDLE-SIGNATURE", severity = "fail", message = "signature check failed: " .. tostring(sig.problem),
                     remediation = "use the key the bundle was signed with; otherwise do not trust its contents" }
          out("signature: FAILED: " .. tostring(sig.problem))
          s:fail(tostring(sig.problem))
        elseif sig.present then
          out("signature: present (" .. what .. "), not checked: pass key=FILE (integrity only so far)")
          s:ok("signed (" .. what .. "), not checked (no key= given)")
        else
          out("signature: none (integrity only: a changed member with its manifest updated would pass)")
          s:ok("unsigned: integrity only")
        end
      end },
  },
  report = function() return #text > 0 and table.concat(text, "\n") or nil end,
}
