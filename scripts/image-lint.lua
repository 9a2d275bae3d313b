-- scripts/image-lint.lua — checks an enclave image's command against the Nitro rules before anyone waits for an
-- enclave that reboots at once: no /bin/sh -c (shell-form CMD/ENTRYPOINT counts), no CMD that silently replaces the
-- ENTRYPOINT, an entry point at all. Takes a Dockerfile (only the final stage counts) or `docker inspect` JSON.
-- The lint itself is nd.imagelint (core/imagelint.c); diag10 runs the same check on its docker_inspect_* files.
local imagelint = require "nd.imagelint"
local findings = require "nd.findings"

local function show(argv)
  if not argv then return "(none)" end
  local parts = {}
  for _, a in ipairs(argv) do parts[#parts + 1] = a:find("[%s\"]") and string.format("%q", a) or a end
  return "[" .. table.concat(parts, ", ") .. "]"
end

return {
  name = "image-lint",
  description = "Lint an enclave image (Dockerfile or docker inspect JSON) for /bin/sh -c and CMD-over-ENTRYPOINT",
  categories = { "enclave", "image" },
  args = {
    { name = "input", type = "string", positional = 1, required = true,
      help = "a Dockerfile, or the JSON of `docker inspect IMAGE`" },
  },
  deadline = 30,
  steps = {
    { name = "lint", timeout = 10, required = true,
      run = function(s)
        local r, err, code = imagelint.file(s.args.input)
        if not r then
          s:finding{ code = "IMG_UNREADABLE", severity = "fail", message = err, evidence = { code } }
          return
        end
        s.data.lint = r
        s:log(string.format("source: %s%s", r.source, r.base and (", final stage FROM " .. r.base) or ""))
        s:log("ENTRYPOINT: " .. show(r.entrypoint) .. (r.entrypoint and (" (" .. r.entrypoint.form .. " form)") or ""))
        s:log("CMD: " .. show(r.cmd) .. (r.cmd and (" (" .. r.cmd.form .. " form)") or ""))
        local env = {}
        for k, v in pairs(r.env) do env[#env + 1] = k .. "=" .. v end
        table.sort(env)
        if #env > 0 then s:log("ENV: " .. table.concat(env, " ")) end
        for _, f in ipairs(r.findings) do
          local where = f.line and string.format("%s:%d: ", s.args.input, f.line) or ""
          local fd = findings.lint(f)
          fd.evidence = { where .. f.evidence }
          s:finding(fd)
        end
        if r.ok then
          local wrapper = ""
          for _, f in ipairs(r.findings) do
            if f.code == "IMG_NO_INIT_WRAPPER" then
              wrapper = "; no PID-1 wrapper: if it dies the enclave reboots without a word (consider nitrodiag-init)"
            end
          end
          s:ok(string.format("Nitro runs %s: no shell, no CMD over ENTRYPOINT%s", show(r.command), wrapper))
        end
      end },
  },
}
