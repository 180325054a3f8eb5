/// <reference types="vitest/config" />
import { defineConfig } from 'vite';

// The Flask API runs on :8000 in development (`make run`); the dev server forwards to it so
// the app uses the same relative URLs as when Flask serves the built files.
const API_ORIGIN = process.env.FLASHSALE_API_ORIGIN ?? 'http://127.0.0.1:8000';
const proxy = Object.fromEntries(
  ['/api', '/healthz', '/readyz'].map((path) => [path, { target: API_ORIGIN, changeOrigin: false }]),
);

export default defineConfig({
  // esbuild compiles TSX with the automatic runtime, so no React plugin is needed.
  esbuild: { jsx: 'automatic' },
  server: { host: '127.0.0.1', port: 5173, proxy },
  preview: { host: '127.0.0.1', port: 4173, proxy },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: false,
    rollupOptions: {
      // react-router marks its modules "use client" for server components; meaningless here.
      onwarn(warning, warn) {
        if (warning.code !== 'MODULE_LEVEL_DIRECTIVE') warn(warning);
      },
    },
  },
  test: {
    environment: 'jsdom',
    setupFiles: ['./src/test/setup.ts'],
    restoreMocks: true,
    unstubGlobals: true,
  },
});
