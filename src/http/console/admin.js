// Admin: users, virtual hosts, permissions and policies (list, add, delete), and the
// definitions file (download what the broker holds, upload one to import). Each section
// reloads itself after a change.
'use strict';

(function () {
  const h = W.h;

  // A section: a title, a table loaded from `url`, and an optional form to add an item.
  function section(title, id, load) {
    const body = h('div', { id });
    const el = h('section', {}, h('h2', {}, title), body);
    const reload = async () => {
      try {
        body.replaceChildren(...(await load(reload)));
      } catch (e) {
        body.replaceChildren(h('p', { class: 'error' }, e.message));
      }
    };
    reload();
    return el;
  }

  function form(fields, button, submit) {
    const f = h('form', { class: 'inline card' }, fields.map(([label, input]) => h('label', {}, label, input)), h('button', { class: 'primary' }, button));
    f.addEventListener('submit', (ev) => {
      ev.preventDefault();
      submit(f);
    });
    return f;
  }

  const del = (url, what, reload) => h('button', { class: 'danger', onclick: async () => {
    if (confirm('Delete ' + what + '?') && await W.attempt(() => W.api('DELETE', url), 'Deleted ' + what)) reload();
  } }, 'Delete');

  async function users(reload) {
    const list = await W.get('/api/users');
    return [W.table([
      { label: 'Name', get: (u) => u.name },
      { label: 'Tags', get: (u) => [].concat(u.tags).join(', ') },
      { label: 'Password', get: (u) => (u.password_hash ? 'set' : 'none (certificate only)') },
      { label: '', get: (u) => del('/api/users/' + W.enc(u.name), 'user ' + u.name, reload) },
    ], list, null, (u) => ({ dataset: { user: u.name } })),
    form([['Name', h('input', { name: 'name', required: true })], ['Password', h('input', { name: 'pass', type: 'password' })],
      ['Tags', h('input', { name: 'tags', placeholder: 'administrator, monitoring' })]], 'Add user', async (f) => {
      const body = { tags: f.tags.value };
      if (f.pass.value) body.password = f.pass.value;
      else body.password_hash = '';
      if (await W.attempt(() => W.api('PUT', '/api/users/' + W.enc(f.name.value), body), 'User saved')) reload();
    })];
  }

  async function vhosts(reload) {
    const list = await W.get('/api/vhosts');
    return [W.table([
      { label: 'Name', get: (v) => v.name },
      { label: 'Description', get: (v) => v.description || '' },
      { label: 'Messages', num: true, get: (v) => W.num(v.messages) },
      { label: '', get: (v) => del('/api/vhosts/' + W.enc(v.name), 'virtual host ' + v.name + ' and everything in it', reload) },
    ], list, null, (v) => ({ dataset: { vhost: v.name } })),
    form([['Name', h('input', { name: 'name', required: true })], ['Description', h('input', { name: 'desc' })]], 'Add virtual host', async (f) => {
      if (await W.attempt(() => W.api('PUT', '/api/vhosts/' + W.enc(f.name.value), { description: f.desc.value }), 'Virtual host added')) reload();
    })];
  }

  async function permissions(reload) {
    const [list, us, vs] = await Promise.all([W.get('/api/permissions'), W.get('/api/users'), W.get('/api/vhosts?columns=name')]);
    return [W.table([
      { label: 'User', get: (p) => p.user },
      { label: 'Virtual host', get: (p) => p.vhost },
      { label: 'Configure', get: (p) => p.configure },
      { label: 'Write', get: (p) => p.write },
      { label: 'Read', get: (p) => p.read },
      { label: '', get: (p) => del('/api/permissions/' + W.enc(p.vhost) + '/' + W.enc(p.user), `${p.user}'s permissions on ${p.vhost}`, reload) },
    ], list),
    form([['User', h('select', { name: 'user' }, us.map((u) => h('option', {}, u.name)))],
      ['Virtual host', h('select', { name: 'vhost' }, vs.map((v) => h('option', {}, v.name)))],
      ['Configure', h('input', { name: 'configure', value: '.*' })], ['Write', h('input', { name: 'write', value: '.*' })], ['Read', h('input', { name: 'read', value: '.*' })]],
    'Set permissions', async (f) => {
      const body = { configure: f.configure.value, write: f.write.value, read: f.read.value };
      if (await W.attempt(() => W.api('PUT', '/api/permissions/' + W.enc(f.vhost.value) + '/' + W.enc(f.user.value), body), 'Permissions set')) reload();
    })];
  }

  async function policies(reload) {
    const [list, vs] = await Promise.all([W.get('/api/policies'), W.get('/api/vhosts?columns=name')]);
    return [W.table([
      { label: 'Virtual host', get: (p) => p.vhost },
      { label: 'Name', get: (p) => p.name },
      { label: 'Pattern', get: (p) => p.pattern },
      { label: 'Apply to', get: (p) => p['apply-to'] },
      { label: 'Definition', get: (p) => JSON.stringify(p.definition) },
      { label: 'Priority', num: true, get: (p) => p.priority },
      { label: '', get: (p) => del('/api/policies/' + W.enc(p.vhost) + '/' + W.enc(p.name), 'policy ' + p.name, reload) },
    ], list, null, (p) => ({ dataset: { policy: p.name } })),
    form([['Virtual host', h('select', { name: 'vhost' }, vs.map((v) => h('option', {}, v.name)))], ['Name', h('input', { name: 'name', required: true })],
      ['Pattern', h('input', { name: 'pattern', required: true, placeholder: '^orders\\.' })],
      ['Apply to', h('select', { name: 'applyto' }, ['queues', 'exchanges', 'all'].map((t) => h('option', {}, t)))],
      ['Definition (JSON)', h('input', { name: 'definition', required: true, placeholder: '{"max-length": 1000}' })],
      ['Priority', h('input', { name: 'priority', type: 'number', value: 0, style: 'width:5em' })]],
    'Add policy', async (f) => {
      const ok = await W.attempt(() => W.api('PUT', '/api/policies/' + W.enc(f.vhost.value) + '/' + W.enc(f.name.value),
        { pattern: f.pattern.value, 'apply-to': f.applyto.value, definition: JSON.parse(f.definition.value), priority: Number(f.priority.value) }), 'Policy saved');
      if (ok) reload();
    })];
  }

  async function definitions() {
    const download = h('button', { id: 'defs-download', onclick: () => W.attempt(async () => {
      const defs = await W.get('/api/definitions');
      // A blob link: the download carries the credentials-checked answer, not a URL the
      // browser would fetch again without them.
      const url = URL.createObjectURL(new Blob([JSON.stringify(defs, null, 2)], { type: 'application/json' }));
      const a = h('a', { href: url, download: 'warren-definitions.json' });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    }) }, 'Download definitions');
    const file = h('input', { type: 'file', accept: '.json,application/json', id: 'defs-file' });
    const upload = h('button', { onclick: () => W.attempt(async () => {
      if (!file.files.length) throw new Error('Choose a definitions file first');
      await W.api('POST', '/api/definitions', await file.files[0].text());
    }, 'Definitions imported') }, 'Upload and import');
    return [h('div', { class: 'card toolbar' }, download, h('span', { class: 'muted' }, 'or import a file:'), file, upload)];
  }

  W.pages.admin = {
    async render(page) {
      page.append(h('h1', {}, 'Admin'),
        section('Users', 'a-users', users),
        section('Virtual hosts', 'a-vhosts', vhosts),
        section('Permissions', 'a-permissions', permissions),
        section('Policies', 'a-policies', policies),
        section('Definitions', 'a-definitions', definitions));
    },
  };
})();
