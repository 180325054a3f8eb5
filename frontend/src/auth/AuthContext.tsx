import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from 'react';
import { ApiError, tokens } from '../api/client';
import { auth } from '../api/shop';
import type { AuthSession, User } from '../api/types';

interface AuthState {
  /** The signed-in user; null when signed out; undefined while the session is being checked. */
  user: User | null | undefined;
  login: (email: string, password: string) => Promise<User>;
  register: (name: string, email: string, password: string) => Promise<User>;
  logout: () => Promise<void>;
  /** Forget the user locally (the session was lost). */
  signedOut: () => void;
  /** Ask the API for the signed-in user again (after verifying the email, say). */
  reloadUser: () => Promise<void>;
}

const AuthContext = createContext<AuthState | null>(null);

export function AuthProvider({ children }: { children: ReactNode }) {
  // Checking while a session may be resumed: the access token is in memory only, so after a
  // reload the client renews it through the refresh cookie on the first call (auth.me).
  const [user, setUser] = useState<User | null | undefined>(() =>
    tokens.access || tokens.mayResume ? undefined : null,
  );

  const loadMe = useCallback(async () => {
    if (!tokens.mayResume) {
      tokens.clear();
      setUser(null);
      return;
    }
    try {
      setUser(await auth.me());
    } catch (error) {
      // A lost session means signed out; a flaky network keeps the session for the next try.
      if (error instanceof ApiError && error.status === 401) tokens.clear();
      setUser(null);
    }
  }, []);

  useEffect(() => {
    void loadMe();
    // Another tab logged in or out: follow it.
    const onStorage = (event: StorageEvent) => {
      if (tokens.isSessionKey(event.key)) void loadMe();
    };
    window.addEventListener('storage', onStorage);
    return () => window.removeEventListener('storage', onStorage);
  }, [loadMe]);

  const start = useCallback((session: AuthSession) => {
    tokens.set(session);
    setUser(session.user);
    return session.user;
  }, []);

  const value = useMemo<AuthState>(
    () => ({
      user,
      login: async (email, password) => start(await auth.login({ email, password })),
      register: async (name, email, password) => start(await auth.register({ name, email, password })),
      logout: async () => {
        try {
          if (tokens.access || tokens.mayResume) await auth.logout();
        } catch {
          // The tokens are forgotten either way; the server refuses them once they expire.
        } finally {
          tokens.clear();
          setUser(null);
        }
      },
      signedOut: () => setUser(null),
      reloadUser: loadMe,
    }),
    [user, start, loadMe],
  );

  return <AuthContext.Provider value={value}>{children}</AuthContext.Provider>;
}

export function useAuth(): AuthState {
  const value = useContext(AuthContext);
  if (!value) throw new Error('useAuth needs an <AuthProvider>');
  return value;
}
