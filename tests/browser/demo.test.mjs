// The demo page of the local stack, clicked through in headless Chromium.
// Run by scripts/browser-test, which starts the stack and sets BASE_URL.
//
// Every test signs in as its own user and connects its own Instagram
// usernames, so the tests share one stack without seeing each other's
// connections. Tests in this file run one after the other (node --test runs
// a file's tests in order); the delete test is last because a delete starts a
// refresh run in the background.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const BASE_URL = process.env.BASE_URL;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR || '';
// A Python with the official `standardwebhooks` (scripts/receiver-python).
const RECEIVER_PYTHON = process.env.RECEIVER_PYTHON;
const RUN = Math.random().toString(36).slice(2, 8);
const T = { timeout: 90_000 };

let browser;

before(async () => {
  assert.ok(BASE_URL, 'BASE_URL is the local stack, e.g. http://127.0.0.1:8080');
  // playwright gives each launch a fresh, throwaway --user-data-dir.
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
});

after(async () => {
  await browser?.close();
});

async function newPage(context, width = 1000) {
  const page = await (context ?? await browser.newContext()).newPage();
  await page.setViewportSize({ width, height: 800 });
  page.setDefaultTimeout(30_000);
  return page;
}

async function openApp(page, user) {
  await page.goto(`${BASE_URL}/app/`);
  await page.fill('#user', user);
  await page.dispatchEvent('#user', 'change');
  await waitText(page, '#conns tbody', /No connections yet/);
}

// Waits until the element's text matches `re`; fails with what it said.
async function waitText(page, selector, re) {
  try {
    await page.waitForFunction(
      ([sel, src, flags]) => new RegExp(src, flags).test(document.querySelector(sel)?.textContent ?? ''),
      [selector, re.source, re.flags],
      { timeout: 30_000 },
    );
  } catch (e) {
    const text = await page.locator(selector).first().textContent().catch(() => '(absent)');
    assert.fail(`${selector} never matched ${re}: it says ${JSON.stringify(text)} (page ${page.url()})`);
  }
  return page.locator(selector).first().textContent();
}

// Clicks "Connect with Instagram" and waits for the emulated consent page.
async function startConnect(page) {
  await page.click('#ig');
  await page.waitForSelector('#approve');
}

// On the consent page: log in as `username` and press Allow or Cancel.
async function decide(page, username, allow = true) {
  await page.fill('#as_username', username);
  await page.click(allow ? '#approve' : '#deny');
}

async function connect(page, username) {
  await startConnect(page);
  await decide(page, username);
  await waitText(page, '#banner', new RegExp(`Connected @${username}`));
  return page.locator(`#conns tr[data-username="${username}"]`);
}

async function reasons(page) {
  return page.evaluate(() => REASONS);
}

async function screenshot(page, name) {
  if (!SCREENSHOT_DIR) return;
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOT_DIR, `${name}.png`), fullPage: true });
}

async function noHorizontalOverflow(page) {
  const { scroll, client } = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth,
  }));
  assert.ok(scroll <= client, `the page is ${scroll}px wide in a ${client}px window`);
}

test('connect with Instagram: Allow at Meta lands back connected and listed', T, async () => {
  const page = await newPage();
  await openApp(page, `alice-${RUN}`);
  const row = await connect(page, `alice_${RUN}`);
  assert.equal(await page.getAttribute('#banner', 'class'), 'banner ok');
  assert.equal(new URL(page.url()).search, '', 'the status query is cleared from the address bar');
  assert.match(await row.textContent(), /Active/);
  assert.match(await row.textContent(), /expires in (59|60) days/);
  // The connection.connected event is shown.
  await waitText(page, '#events tbody', /connection\.connected/);
  await screenshot(page, 'connected');

  // Another user sees none of it; switching back shows it again.
  await page.fill('#user', `bob-${RUN}`);
  await page.dispatchEvent('#user', 'change');
  await waitText(page, '#conns tbody', new RegExp(`No connections yet for bob-${RUN}`));
  await waitText(page, '#events tbody', /No events yet/);
  await page.fill('#user', `alice-${RUN}`);
  await page.dispatchEvent('#user', 'change');
  await waitText(page, '#conns tbody', new RegExp(`@alice_${RUN}`));
});

test('cancel at Meta is shown as a cancel, in the words of the API', T, async () => {
  const page = await newPage();
  await openApp(page, `carol-${RUN}`);
  await startConnect(page);
  await decide(page, `carol_${RUN}`, false);
  const { access_denied } = await reasons(page);
  assert.ok(access_denied, 'the page has the reasons of the API');
  const text = await waitText(page, '#banner', new RegExp(access_denied.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
  assert.equal(await page.getAttribute('#banner', 'class'), 'banner info');
  assert.doesNotMatch(text, /fail|error|access_denied/i);
  await waitText(page, '#conns tbody', /No connections yet/);
  await screenshot(page, 'cancelled');
});

test('a failure reason is shown as the sentence the complete mode returns', T, async () => {
  const page = await newPage();
  await page.goto(`${BASE_URL}/app/?status=error&provider=instagram&reason=invalid_state`);
  const { invalid_state } = await reasons(page);
  const text = await waitText(page, '#banner', /not connected/);
  assert.ok(text.includes(invalid_state), text);
  assert.equal(await page.getAttribute('#banner', 'class'), 'banner err');
});

test('complete mode: Allow at Meta, the page completes the connection', T, async () => {
  const page = await newPage();
  await openApp(page, `dora-${RUN}`);
  await page.click('#ig-complete');
  await page.waitForSelector('#approve');
  await decide(page, `dora_${RUN}`);
  await waitText(page, '#banner', new RegExp(`Connected @dora_${RUN} \\(complete mode\\)`));
  await waitText(page, '#conns tbody', new RegExp(`@dora_${RUN}`));
});

test('connect with Facebook: every granted Page with an Instagram account is listed', T, async () => {
  const page = await newPage();
  await openApp(page, `fiona-${RUN}`);
  await page.click('#fb');
  await page.waitForSelector('#approve');
  await page.click('#approve');
  const text = await waitText(page, '#banner', /Connected @.* through Facebook\./);
  const rows = await page.locator('#conns tr[data-provider="facebook"]').count();
  assert.ok(rows >= 1, `no Facebook connection listed (banner: ${text})`);
  assert.match(await page.textContent('#conns tbody'), /Facebook · .*Page/);
});

test('two tabs: two Connect flows started in one browser both end connected', T, async () => {
  const context = await browser.newContext();
  const first = await newPage(context);
  await openApp(first, `erin-${RUN}`);
  await startConnect(first);
  const second = await newPage(context);
  await second.goto(`${BASE_URL}/app/`);
  assert.equal(await second.inputValue('#user'), `erin-${RUN}`);
  await startConnect(second);
  // Both consent pages are open; approve the first flow, then the second.
  await decide(first, `erin_one_${RUN}`);
  await waitText(first, '#banner', new RegExp(`Connected @erin_one_${RUN}|not connected`));
  await decide(second, `erin_two_${RUN}`);
  await waitText(second, '#banner', new RegExp(`Connected @erin_two_${RUN}|not connected`));
  const banners = [await first.textContent('#banner'), await second.textContent('#banner')];
  assert.ok(banners.every(b => b.startsWith('Connected')), `both flows connect: ${JSON.stringify(banners)}`);
  await second.reload();
  await waitText(second, '#conns tbody', new RegExp(`@erin_one_${RUN}[\\s\\S]*@erin_two_${RUN}|@erin_two_${RUN}[\\s\\S]*@erin_one_${RUN}`));
  await context.close();
});

test('an API error is shown as a message, not as empty tables', T, async () => {
  const page = await newPage();
  await page.route('**/connections', route => route.fulfill({
    status: 500, contentType: 'application/json',
    body: JSON.stringify({ error: 'server_error', message: 'The store is unavailable.' }),
  }));
  await page.goto(`${BASE_URL}/app/`);
  await waitText(page, '#conns tbody', /Could not load the connections: The store is unavailable\./);
  await waitText(page, '#banner', /Could not load your connections/);
  assert.equal(await page.getAttribute('#banner', 'class'), 'banner err');
});

test('send a signed webhook: the event appears, and long payloads stay in the page', T, async () => {
  const page = await newPage();
  await openApp(page, `frank-${RUN}`);
  const row = await connect(page, `frank_${RUN}`);
  await row.locator('button.send').click();
  await waitText(page, '#banner', /delivered a signed message webhook for @frank_.*answered 200/);
  await waitText(page, '#events tbody tr:first-child', /messages/);
  const summary = page.locator('#events tbody tr:first-child details summary');
  await summary.click();
  const pre = page.locator('#events tbody tr:first-child details pre');
  assert.match(await pre.textContent(), /Hello from the local stack/);
  await noHorizontalOverflow(page);
  await screenshot(page, 'webhook');
  await page.setViewportSize({ width: 420, height: 800 });
  await noHorizontalOverflow(page);
  await screenshot(page, 'webhook-narrow');
});

test('make a connection due, run the scheduled refresh: the summary is in words', T, async () => {
  const page = await newPage();
  await openApp(page, `gina-${RUN}`);
  const username = `gina_${RUN}`;
  const row = await connect(page, username);
  await row.locator('button.age').click();
  await waitText(page, '#banner', new RegExp(`@${username} is now due for refresh`));
  await waitText(page, `#conns tr[data-username="${username}"] td.token`, /expires in 12 hours/);
  await page.click('#refresh');
  const text = await waitText(page, '#banner', /^Refresh run:/);
  // Every active connection is looked at daily (its webhook subscription is
  // verified), so the other tests' connections are examined too.
  assert.match(text, /\d+ connections? examined — 1 token refreshed, 0 failed/);
  assert.doesNotMatch(text, /[{}"]/, 'no raw JSON');
  assert.equal(await page.getAttribute('#banner', 'class'), 'banner ok');
  const token = await waitText(page, `#conns tr[data-username="${username}"] td.token`, /expires in (59|60) days/);
  assert.match(token, /refreshed/);
  await screenshot(page, 'refreshed');
  // Nothing is due any more.
  await page.click('#refresh');
  await waitText(page, '#banner', /Refresh run: nothing was due\./);
});

test('the Graph proxy: show recent media, reply to the last message once, run the example DM bot', T, async () => {
  const page = await newPage();
  await openApp(page, `hugo-${RUN}`);
  const username = `hugo_${RUN}`;
  const row = await connect(page, username);
  // Every answer of the proxy the page sees, to look for a credential.
  const proxied = [];
  page.on('response', async (resp) => {
    if (resp.url().includes('/graph/')) proxied.push(await resp.text().catch(() => ''));
  });
  await row.locator('button.media').click();
  await waitText(page, '#banner', /Meta answered through the proxy: 2 posts of @hugo_/);
  await waitText(page, '#graph-out', /Recent media of @hugo_.*Post 1.*Post 2/);
  // "More" follows paging.next: the proxy's own route, with no token in it.
  await page.click('#graph-out button.more');
  await waitText(page, '#banner', /Meta answered through the proxy: 1 post of @hugo_/);
  await waitText(page, '#graph-out', /Post 1.*Post 2.*Post 3/);
  assert.equal(await page.locator('#graph-out button.more').count(), 0, 'the last page has no More');
  assert.ok(proxied.length >= 2, 'the page fetched two pages');
  for (const body of proxied) {
    assert.ok(!/access_token|appsecret/.test(body), `a credential reached the page: ${body}`);
    assert.ok(body.includes('/graph/') || !body.includes('"next"'), body);
  }
  // Nothing to reply to yet; then a person writes (a signed webhook).
  await row.locator('button.reply').click();
  await waitText(page, '#banner', /No message to @hugo_/);
  await row.locator('button.send').click();
  await waitText(page, '#banner', /answered 200/);
  await row.locator('button.reply').click();
  const first = await waitText(page, '#banner', /Replied to "Hello from the local stack/);
  const id = first.match(/message id: (\S+)\./)[1];
  // The same Idempotency-Key (the event id): the same answer, one DM at Meta.
  await page.evaluate(() => { document.getElementById('banner').textContent = ''; });
  await row.locator('button.reply').click();
  const again = await waitText(page, '#banner', /Replied to/);
  assert.ok(again.includes(`message id: ${id}.`), `a replay gives the first answer: ${again}`);
  // The backend door, through the example consumer of the events stream.
  await page.click('#dm-bot');
  await waitText(page, "#banner", /The example DM bot read the stream: \d+ messages? answered through the proxy.*, 0 to retry/);
  await screenshot(page, 'graph-proxy');
});

test('schedule a post with an uploaded image: the every-minute run publishes it', { timeout: 180_000 }, async () => {
  const page = await newPage();
  await openApp(page, `june-${RUN}`);
  const username = `june_${RUN}`;
  await connect(page, username);
  await waitText(page, '#posts tbody', /No posts yet/);
  // A JPEG from this computer, a caption, a time 8 seconds from now.
  await page.setInputFiles('#post-file', {
    name: 'launch.jpg', mimeType: 'image/jpeg',
    buffer: Buffer.from([0xff, 0xd8, 0xff, 0xe0, ...Buffer.from(' a photo from the demo page')]),
  });
  await page.fill('#post-caption', `Launch day ${RUN}`);
  const at = await page.evaluate(() => {
    const d = new Date(Date.now() + 8000);
    const two = (n) => String(n).padStart(2, '0');
    return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())}T${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
  });
  await page.fill('#post-at', at);
  await page.click('#schedule');
  await waitText(page, '#banner', /^Scheduled for .*Meta will fetch it through a presigned GET/);
  await waitText(page, '#posts tbody', new RegExp(`scheduled.*Launch day ${RUN}`));
  // A run before its time leaves it scheduled.
  await page.click('#run-publish');
  await waitText(page, '#banner', /^Publish run: /);
  await waitText(page, '#posts tbody .post-status', /^scheduled$/);
  await screenshot(page, 'post-scheduled');
  // The local stack's every-minute run (as EventBridge's) publishes it; the
  // page looks again by itself until it has its outcome.
  try {
    await page.waitForFunction(
      () => document.querySelector('#posts tbody .post-status')?.textContent === 'published',
      null, { timeout: 100_000 },
    );
  } catch {
    assert.fail(`never published: ${await page.locator('#posts tbody').textContent()}`);
  }
  const row = await page.locator('#posts tbody tr').first().textContent();
  assert.match(row, /https:\/\/www\.instagram\.com\/p\//, 'the permalink is shown');
  await page.click('#run-publish');
  await waitText(page, '#events tbody', /post\.published/);
  await noHorizontalOverflow(page);
  await screenshot(page, 'post-published');
});

test('outbound webhooks: the local receiver gets signed deliveries, a failing one is retried', T, async () => {
  const page = await newPage();
  await openApp(page, `iris-${RUN}`);
  await page.click('#wh-register');
  await waitText(page, '#banner', /The local receiver is registered/);
  assert.ok(await page.isDisabled('#wh-register'), 'registered once');
  // Every new event reaches it, signed: the connection's own event first.
  const row = await connect(page, `iris_${RUN}`);
  await waitText(page, '#wh tbody', /connection\.connected.*attempt 1: delivered · signature verified/);
  await screenshot(page, 'outbound-delivered');

  // The receiver answers 500: the attempt fails and its retry is scheduled.
  await page.check('#wh-failing');
  await row.locator('button.send').click();
  await waitText(page, '#banner', /answered 200/);
  await waitText(page, '#wh tbody tr:first-child', /messages.*attempt 1: failed \(http_status 500\).* · retry at/);
  await screenshot(page, 'outbound-failing');
  // Fixed before the retry (about 5 s later, the page shows it within 1.5 s):
  // the retry is delivered, with the same webhook-id.
  await page.uncheck('#wh-failing');
  await waitText(page, '#wh tbody tr:first-child', /messages.*attempt 2: delivered · signature verified/);
  assert.match(await page.locator('#wh tbody tr:nth-child(2)').textContent(), /attempt 1: failed/);
  const id = (n) => page.locator(`#wh tbody tr:nth-child(${n}) td[data-label="webhook-id"]`).textContent();
  assert.equal(await id(1), await id(2), 'the retry carries the first attempt\'s webhook-id');
  await noHorizontalOverflow(page);
  await screenshot(page, 'outbound-retried');
});

// The README's receiver (examples/receiver/receiver.py), run as its reader
// would, against this running stack: it verifies with the official library.
test("the README's receiver verifies a delivery of the running local stack", T, async () => {
  assert.ok(RECEIVER_PYTHON, 'RECEIVER_PYTHON is a Python with standardwebhooks (scripts/browser-test sets it)');
  const admin = async (method, path, body) => {
    const r = await fetch(`${BASE_URL}/dev/admin/${path}`, {
      method, headers: { 'content-type': 'application/json' }, body: body && JSON.stringify(body),
    });
    return { status: r.status, body: r.status === 204 ? null : await r.json() };
  };
  const created = await admin('POST', 'endpoints', { url: 'http://127.0.0.1:9/', kinds: ['messages'] });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const { id, secret } = created.body;
  assert.match(secret, /^whsec_/);
  const script = fileURLToPath(new URL('../../examples/receiver/receiver.py', import.meta.url));
  const child = spawn(RECEIVER_PYTHON, [script], {
    env: { ...process.env, WEBHOOK_SECRET: secret, PORT: '0' }, stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const nextLine = (what) => Promise.race([
    lines.next().then((l) => l.value),
    new Promise((_, no) => setTimeout(() => no(new Error(`the receiver never printed ${what}`)), 30_000)),
  ]);
  try {
    const port = (await nextLine('its port')).match(/^listening on (\d+)$/)[1];
    const moved = await admin('PATCH', `endpoints/${id}`, { url: `http://127.0.0.1:${port}/ig-events` });
    assert.equal(moved.status, 200, JSON.stringify(moved.body));
    const page = await newPage();
    await openApp(page, `jules-${RUN}`);
    const row = await connect(page, `jules_${RUN}`);
    const account = await row.getAttribute('data-account');
    await row.locator('button.send').click();
    await waitText(page, '#banner', /answered 200/);
    // It printed what it verified: type, account, occurred_at.
    const printed = await nextLine('a verified event');
    assert.match(printed, new RegExp(`^messages ${account} \\d{4}-\\d\\d-\\d\\dT`));
    const attempts = await admin('GET', `endpoints/${id}/attempts`);
    assert.equal(attempts.status, 200);
    const [last] = attempts.body.attempts;
    assert.deepEqual([last.outcome, last.status], ['delivered', 204]);
  } finally {
    child.kill();
    await admin('DELETE', `endpoints/${id}`);
  }
});

test('delete a connection', T, async () => {
  const page = await newPage();
  await openApp(page, `hugo-${RUN}`);
  const username = `hugo_${RUN}`;
  const row = await connect(page, username);
  await row.locator('button.delete').click();
  await waitText(page, '#banner', new RegExp(`Deleted @${username}\\.`));
  await waitText(page, '#conns tbody', /No connections yet/);
  await waitText(page, '#events tbody', /connection\.deleted/);
});
