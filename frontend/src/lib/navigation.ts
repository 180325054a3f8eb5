/** The login page, coming back to where the shopper was afterwards. */
export function loginPath(location: { pathname: string; search: string }): string {
  const next = location.pathname + location.search;
  return next && next !== '/' && !next.startsWith('/login') ? `/login?next=${encodeURIComponent(next)}` : '/login';
}
