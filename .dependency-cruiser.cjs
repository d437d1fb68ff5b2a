// The sidecar's layers, lowest first; a module may import from its own layer and the ones below, never above,
// and nothing may import in a cycle (docs/architecture.md draws them). `npm run lint` runs this check.
const layers = [
  ['base', '^src/(domain|xmpp|gen)/'],
  ['routing', '^src/routing/'],
  ['desk', '^src/desk/'],
  ['cluster', '^src/cluster/'],
  ['adapters', '^src/(storage|bot|ops)/'],
  ['transports', '^src/(grpc|admin)/'],
  ['main', '^src/(main|cli)\\.ts$'],
];

const upward = layers.slice(0, -1).map(([name, path], i) => ({
  name: `no-upward-from-${name}`,
  comment: `${name} must not import from a higher layer (${layers
    .slice(i + 1)
    .map(([n]) => n)
    .join(', ')})`,
  severity: 'error',
  from: { path },
  to: { path: layers.slice(i + 1).map(([, p]) => p) },
}));

module.exports = {
  forbidden: [
    { name: 'no-circular', comment: 'import cycles hide which module depends on which', severity: 'error', from: {}, to: { circular: true } },
    ...upward,
    {
      name: 'only-known-folders',
      comment: 'every module of src/ belongs to a layer: add a new folder to the layers above',
      severity: 'error',
      from: { path: '^src/', pathNot: layers.map(([, p]) => p) },
      to: {},
    },
    { name: 'no-tests-from-src', severity: 'error', from: { path: '^src/' }, to: { path: '^(test|bench|scripts)/' } },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^src/gen/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default'] },
  },
};
