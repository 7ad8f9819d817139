// Drives Debian's Chromium (headless, through playwright-core, which never downloads a
// browser) through the Warren web console against a running broker with data in it, and
// checks that the pages show the broker's real numbers and that actions work.
//
// Run by tests/console.rs, which fills the broker and checks the actions' effects through
// the API afterwards. Environment:
//   WARREN_URL     the console, e.g. http://127.0.0.1:15672
//   WARREN_EXPECT  JSON: what the pages must show (see tests/console.rs)
//   SHOTS          directory for screenshots (created)
//   DOCS_QUEUE     optional: instead of the checks, take the README's screenshots
//                  (overview after SETTLE_MS of live charts, the queue list, this queue's
//                  page) against a broker with traffic (tools/console_demo.py)
//   SETTLE_MS      with DOCS_QUEUE: how long the overview's charts fill first
// Exits 0 when every check passed; otherwise prints the failure, saves failure.png and
// exits 1.
'use strict';

const fs = require('fs');
const path = require('path');
const { chromium } = require('playwright-core');

const URL_ = process.env.WARREN_URL;
const EXPECT = JSON.parse(process.env.WARREN_EXPECT || '{}');
const SHOTS = process.env.SHOTS || 'shots';
const SETTLE_MS = Number(process.env.SETTLE_MS || 0);
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
// The flags this machine's Chromium needs (no sandbox as root, no network beyond
// loopback: background services would try Google's hosts).
const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync'];

let checks = 0;
function check(cond, what) {
  if (!cond) throw new Error('check failed: ' + what);
  checks++;
}

// Waits until the text of `selector` equals `want` (the pages poll every 5 s, so a value
// may take one poll to arrive); fails naming what it saw last.
async function expectText(page, selector, want, timeout = 12000) {
  const deadline = Date.now() + timeout;
  let seen;
  for (;;) {
    seen = await page.locator(selector).first().textContent({ timeout: 2000 }).catch(() => '<absent>');
    if (seen !== null && seen.trim() === String(want)) {
      checks++;
      return;
    }
    if (Date.now() > deadline) throw new Error(`${selector}: expected ${JSON.stringify(String(want))}, saw ${JSON.stringify(seen)}`);
    await page.waitForTimeout(200);
  }
}

const num = (n) => Number(n).toLocaleString('en-US');
// Long pages whole; the queue list as the first screen (a page of 100 rows is tall).
const shot = (page, name, fullPage = true) => page.screenshot({ path: path.join(SHOTS, name + '.png'), fullPage });
const qrow = (name) => `tr[data-queue="${name}"]`;

async function main() {
  fs.mkdirSync(SHOTS, { recursive: true });
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS });
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 }, acceptDownloads: true });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  // Purge, delete and close ask first; the test says yes (a prompt keeps its default).
  page.on('dialog', (d) => (d.type() === 'prompt' ? d.accept(d.defaultValue()) : d.accept()));
  try {
    await (process.env.DOCS_QUEUE ? docs(page, process.env.DOCS_QUEUE) : run(page));
    check(problems.length === 0, 'no script errors: ' + problems.join('; '));
    console.log(JSON.stringify({ ok: true, checks }));
  } catch (e) {
    await shot(page, 'failure').catch(() => {});
    console.error(e.stack || String(e));
    if (problems.length) console.error(problems.join('\n'));
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}

async function run(page) {
  // ---- login: a wrong password stays on our form (no browser dialog), then the right one
  await page.goto(URL_ + '/');
  await page.fill('#login input[name=user]', EXPECT.user);
  await page.fill('#login input[name=pass]', 'wrong-password');
  await page.click('#login button');
  await expectText(page, '#login-error', 'Login failed.');
  await page.fill('#login input[name=pass]', EXPECT.pass);
  await page.click('#login button');
  await page.waitForSelector('#nav:not([hidden])');
  await page.waitForSelector('#login', { state: 'hidden' });

  // ---- overview: the totals are the broker's
  await expectText(page, '#ov-queues', num(EXPECT.queues));
  await expectText(page, '#ov-ready', num(EXPECT.ready));
  await expectText(page, '#ov-unacked', num(EXPECT.unacked));
  await expectText(page, '#ov-consumers', num(EXPECT.consumers));
  await expectText(page, '#ov-connections', num(EXPECT.connections));
  await page.waitForSelector('#ov-node dl');
  const node = await page.textContent('#ov-node');
  check(node.includes('fsync policy') && node.includes(EXPECT.fsync), 'the node card names the fsync policy: ' + node);
  check(node.includes('fsync rounds'), 'the node card shows fsync rounds');
  check((await page.getAttribute('#ov-alarms', 'data-alarms')) === '0', 'no alarms shown');
  if (SETTLE_MS) await page.waitForTimeout(SETTLE_MS);
  await shot(page, 'overview');

  // ---- queues: one page of rows from the server, whatever the total
  await page.click('#nav a[data-page=queues]');
  await expectText(page, '#q-summary', `${num(EXPECT.queues)} of ${num(EXPECT.queues)} queues`);
  const rows = await page.locator('#q-table tbody tr').count();
  check(rows === Math.min(100, EXPECT.queues), `one page of rows (saw ${rows})`);
  // Sorted by total messages, largest first: the fullest queue leads.
  await page.click('#q-table th:has-text("Total")');
  await expectText(page, '#q-table tbody tr:first-child td[data-col=name]', EXPECT.fullest);
  await shot(page, 'queues', false);
  await page.fill('#q-filter', EXPECT.orders.name);
  await expectText(page, '#q-summary', `1 of ${num(EXPECT.queues)} queues`);
  await expectText(page, `${qrow(EXPECT.orders.name)} td[data-col=messages]`, num(EXPECT.orders.messages));
  await page.fill('#q-filter', '^console\\.(work|empty)$');
  await page.check('#q-regex');
  await expectText(page, '#q-summary', `2 of ${num(EXPECT.queues)} queues`);
  await expectText(page, `${qrow(EXPECT.work.name)} td[data-col=ready]`, num(EXPECT.work.ready));
  await expectText(page, `${qrow(EXPECT.work.name)} td[data-col=unacked]`, num(EXPECT.work.unacked));
  await expectText(page, `${qrow(EXPECT.work.name)} td[data-col=consumers]`, '1');
  await page.fill('#q-filter', '');
  await page.uncheck('#q-regex');

  // ---- an exchange: bindings, and where a test message goes
  await page.click('#nav a[data-page=exchanges]');
  await page.click(`tr[data-exchange="${EXPECT.exchange}"] a`);
  await page.waitForSelector('#x-publish');
  check((await page.textContent('main')).includes(EXPECT.orders.name), 'the exchange page lists its binding to the orders queue');
  await page.fill('#x-publish input[name=key]', EXPECT.routedKey);
  await page.fill('#x-publish textarea', 'routed by the console test');
  await page.click('#x-publish button');
  await expectText(page, '#x-routed-flag', 'true');
  check((await page.textContent('#x-routed table')).includes(EXPECT.orders.name), 'the matching binding is the orders queue');
  await page.fill('#x-publish input[name=key]', 'nowhere.at.all');
  await page.click('#x-publish button');
  await expectText(page, '#x-routed-flag', 'false');
  await shot(page, 'exchange');

  // ---- the orders queue: counters, storage, get, then purge
  await page.goto(URL_ + '/#/queue/' + encodeURIComponent(EXPECT.vhost) + '/' + encodeURIComponent(EXPECT.orders.name));
  await expectText(page, '#q-messages', num(EXPECT.orders.messages + 1)); // + the routed test message
  await expectText(page, '#q-segments', String(EXPECT.orders.segments));
  const live = await page.textContent('#q-live-ratio');
  check(live === '100.0 %', 'nothing acked yet: live ratio 100 % (saw ' + live + ')');
  await page.click('#q-get button');
  await page.waitForSelector('#q-got .payload');
  check((await page.textContent('#q-got .payload')) === EXPECT.orders.first, 'get shows the first message');
  await shot(page, 'queue');
  await page.click('#q-purge');
  await expectText(page, '#q-ready', '0');

  // ---- the empty queue: publish a message from the console
  await page.goto(URL_ + '/#/queue/' + encodeURIComponent(EXPECT.vhost) + '/' + encodeURIComponent(EXPECT.empty));
  await expectText(page, '#q-messages', '0');
  await page.fill('#q-publish textarea', EXPECT.consolePayload);
  await page.click('#q-publish button');
  await expectText(page, '#q-messages', '1');

  // ---- connections: close the victim
  await page.click('#nav a[data-page=connections]');
  const victim = page.locator('#c-table tr', { hasText: EXPECT.victim });
  await victim.waitFor();
  await shot(page, 'connections');
  await victim.locator('button').click();
  await victim.waitFor({ state: 'detached' });
  checks++;

  // ---- admin: users, a new vhost, definitions download
  await page.click('#nav a[data-page=admin]');
  await page.waitForSelector(`#a-users tr[data-user="${EXPECT.user}"]`);
  const vf = page.locator('#a-vhosts form');
  await vf.locator('input[name=name]').fill(EXPECT.newVhost);
  await vf.locator('button').click();
  await page.waitForSelector(`#a-vhosts tr[data-vhost="${EXPECT.newVhost}"]`);
  const pf = page.locator('#a-policies form');
  await pf.locator('input[name=name]').fill('console-limit');
  await pf.locator('input[name=pattern]').fill('^console\\.bulk\\.');
  await pf.locator('input[name=definition]').fill('{"max-length": 1000}');
  await pf.locator('button').click();
  await page.waitForSelector('#a-policies tr[data-policy="console-limit"]');
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#defs-download')]);
  const defs = JSON.parse(fs.readFileSync(await download.path(), 'utf8'));
  check(defs.queues.some((q) => q.name === EXPECT.orders.name), 'the downloaded definitions hold the orders queue');
  const upload = { vhosts: [{ name: EXPECT.uploadVhost }] };
  await page.setInputFiles('#defs-file', { name: 'defs.json', mimeType: 'application/json', buffer: Buffer.from(JSON.stringify(upload)) });
  await page.click('#a-definitions button:has-text("Upload")');
  await page.waitForSelector('#flash div:has-text("Definitions imported")');
  checks++;
  await shot(page, 'admin');

  // ---- a user added here, with the management tag only: logs in, sees no vhost's
  // queues (no permissions) and no node details (no monitoring tag), and stays logged in
  const uf = page.locator('#a-users form');
  await uf.locator('input[name=name]').fill(EXPECT.viewer.name);
  await uf.locator('input[name=pass]').fill(EXPECT.viewer.pass);
  await uf.locator('input[name=tags]').fill('management');
  await uf.locator('button').click();
  await page.waitForSelector(`#a-users tr[data-user="${EXPECT.viewer.name}"]`);
  await page.click('#logout');
  await page.waitForSelector('#login:not([hidden])');
  await page.fill('#login input[name=user]', EXPECT.viewer.name);
  await page.fill('#login input[name=pass]', EXPECT.viewer.pass);
  await page.click('#login button');
  // The login returns to the page it interrupted (admin): its lists say what is refused.
  await page.waitForSelector('#a-users p.error:has-text("Not administrator user")');
  await page.click('#nav a[data-page=overview]');
  await expectText(page, '#ov-queues', '0');
  await expectText(page, '#ov-node p', 'Node details need the monitoring tag.');
  check(await page.isVisible('#nav'), 'a management user stays logged in');
  await expectText(page, '#who', EXPECT.viewer.name + ' (management)');
}

// The README's screenshots: no checks beyond the pages loading.
async function docs(page, queue) {
  await page.goto(URL_ + '/');
  await page.fill('#login input[name=user]', process.env.WARREN_USER || 'guest');
  await page.fill('#login input[name=pass]', process.env.WARREN_PASS || 'guest');
  await page.click('#login button');
  await page.waitForSelector('#ov-node dl');
  await page.waitForTimeout(SETTLE_MS);
  await shot(page, 'console-overview');
  await page.click('#nav a[data-page=queues]');
  await page.click('#q-table th:has-text("Publish /s")');
  await page.waitForTimeout(1500);
  await shot(page, 'console-queues', false);
  await page.goto(URL_ + '/#/queue/%2F/' + encodeURIComponent(queue));
  await page.waitForSelector('#q-storage dl');
  await page.click('#q-get button');
  await page.waitForSelector('#q-got .payload');
  await shot(page, 'console-queue');
}

main();
