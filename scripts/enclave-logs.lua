-- scripts/enclave-logs.lua — what enclaves said over the log channel: the files nitrodiag-logd writes, one per
-- enclave (nitrodiag-init --log vsock:3:PORT inside, debug mode or not). Lists them, shows the last lines of one (the
-- most recent by default) and says why its application died, with the enclave rules of nd.diagnose
-- (lua/nd/rules/enclave.lua). See docs/enclave.md.
local fs = require "nd.fs"
local host = require "nd.host"
local diagnose = require "nd.diagnose"
local findings = require "nd.findings"
local uv = require "luv"

local DEFAULT_DIR = "/var/log/nitrodiag/enclaves"
local MAX_READ = 8 * 1024 * 1024 -- the tail read from a file; nitrodiag-logd rotates at 16 MiB

local function under_root(path)
  local root = host.root()
  if root == "/" or root == "" or path:sub(1, #root) == root then return path end
  return root .. path
end

-- The last `n` lines of a file (reading at most MAX_READ bytes from its end).
local function tail(path, n)
  local fd, err = uv.fs_open(path, "r", 0)
  if not fd then return nil, err end
  local st = uv.fs_fstat(fd)
  local size = st and st.size or 0
  local off = size > MAX_READ and size - MAX_READ or 0
  local data = uv.fs_read(fd, size - off, off) or ""
  uv.fs_close(fd)
  local lines = {}
  for l in data:gmatch("[^\n]+") do lines[#lines + 1] = l end
  if off > 0 then table.remove(lines, 1) end -- the first one is cut
  local first = #lines - n + 1
  if first < 1 then first = 1 end
  return table.move(lines, first, #lines, 1, {}), #lines
end

return {
  name = "enclave-logs",
  description = "Show and triage what enclaves streamed over the log channel (nitrodiag-init --log, nitrodiag-logd files)",
  categories = { "enclave", "triage" },
  args = {
    { name = "enclave", type = "string", positional = 1,
      help = "enclave id (i-…-enc…) or cid-N; default: the most recently written file" },
    { name = "dir", type = "string", default = DEFAULT_DIR, help = "where nitrodiag-logd writes (its --dir)" },
    { name = "lines", type = "number", default = 40, help = "how many of the last lines to show" },
  },
  deadline = 60,
  steps = {
    { name = "list", timeout = 10, required = true,
      run = function(s)
        local dir = under_root(s.args.dir)
        if not fs.is_dir(dir) then
          s:finding(findings.make("ENCLAVE_LOGS_NONE",
            { detail = dir .. " does not exist: nitrodiag-logd has not received anything on this host" }))
          s:fail("no enclave log directory " .. dir)
          return
        end
        local files = {}
        for _, f in ipairs(fs.list(dir) or {}) do
          if f:match("%.log$") then
            local st = uv.fs_stat(dir .. "/" .. f)
            if st and st.type == "file" then
              files[#files + 1] = { name = f:gsub("%.log$", ""), path = dir .. "/" .. f, size = st.size, mtime = st.mtime.sec }
            end
          end
        end
        table.sort(files, function(a, b) if a.mtime ~= b.mtime then return a.mtime > b.mtime end return a.name < b.name end)
        if #files == 0 then
          s:finding(findings.make("ENCLAVE_LOGS_NONE", { detail = "no enclave has streamed its log to " .. dir }))
          s:fail("no log files in " .. dir)
          return
        end
        local out = {}
        for _, f in ipairs(files) do
          out[#out + 1] = string.format("%-48s %10d bytes  %s", f.name, f.size, os.date("!%Y-%m-%dT%H:%M:%SZ", f.mtime))
        end
        s:log(table.concat(out, "\n"))
        s.data.files = files
        s:ok(string.format("%d enclave log(s) in %s", #files, dir))
      end },
    { name = "show", timeout = 20, required = true,
      run = function(s)
        local pick
        for _, f in ipairs(s.data.files) do
          if not s.args.enclave or f.name == s.args.enclave then pick = f break end
        end
        if not pick then
          s:fail("no log of enclave " .. tostring(s.args.enclave) .. " (see the list above)")
          return
        end
        local lines, total = tail(pick.path, math.max(1, math.floor(s.args.lines)))
        if not lines then s:fail(pick.path .. ": " .. tostring(total)) return end
        s.data.pick, s.data.text = pick, table.concat(lines, "\n")
        s:log(s.data.text)
        s:ok(string.format("%s: last %d of %d line(s)", pick.name, #lines, total))
      end },
    { name = "triage", timeout = 20,
      run = function(s)
        local res = diagnose.run(s.data.text)
        for _, c in ipairs(res.causes) do s:finding(c) end
        for _, c in ipairs(res.consequences) do s:finding(c) end
        if res.top then
          s:ok(s.data.pick.name .. ": " .. res.top.message)
        else
          s:ok(s.data.pick.name .. ": nothing in these lines that I know as a failure")
        end
      end },
  },
}
