import { useEffect, type ReactNode } from 'react';
import { Link, NavLink, Navigate, Route, Routes, useLocation, useNavigate } from 'react-router';
import { setAuthLostHandler } from './api/client';
import { AuthProvider, useAuth } from './auth/AuthContext';
import { Loading } from './components/Loading';
import { loginPath } from './lib/navigation';
import { AdminPage } from './pages/AdminPage';
import { AdminSalePage } from './pages/AdminSalePage';
import { CartPage } from './pages/CartPage';
import { FairnessPage } from './pages/FairnessPage';
import { LoginPage, RegisterPage } from './pages/AuthPages';
import { NotFoundPage } from './pages/NotFoundPage';
import { OrderPage } from './pages/OrderPage';
import { OrdersPage } from './pages/OrdersPage';
import { ProductPage } from './pages/ProductPage';
import { SalePage } from './pages/SalePage';
import { SalesPage } from './pages/SalesPage';
import { ShopPage } from './pages/ShopPage';
import { TicketPage } from './pages/TicketPage';
import { CheckEmailPage, DevMailboxPage, VerifyEmailPage } from './pages/VerifyEmailPages';


function SessionWatch() {
  const navigate = useNavigate();
  const location = useLocation();
  const { signedOut } = useAuth();
  useEffect(() => {
    setAuthLostHandler(() => {
      signedOut();
      navigate(loginPath(window.location), { replace: true });
    });
  }, [navigate, signedOut, location]);
  return null;
}

export function RequireAuth({ children, admin = false }: { children: ReactNode; admin?: boolean }) {
  const { user } = useAuth();
  const location = useLocation();
  if (user === undefined) return <Loading label="Checking your session…" />;
  if (user === null) return <Navigate to={loginPath(location)} replace />;
  if (admin && user.role !== 'admin') {
    return (
      <section className="page">
        <h1>Operators only</h1>
        <p>This page is for the shop's operators. <Link to="/">Back to the shop</Link>.</p>
      </section>
    );
  }
  return <>{children}</>;
}

function Header() {
  const { user, logout } = useAuth();
  const navigate = useNavigate();
  return (
    <header className="site-header">
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <div className="header-inner">
        <Link to="/" className="brand">
          Flash sale
        </Link>
        <nav aria-label="Main">
          <ul className="nav-list">
            <li>
              <NavLink to="/sales">Sales</NavLink>
            </li>
            <li>
              <NavLink to="/cart">Cart</NavLink>
            </li>
            <li>
              <NavLink to="/orders">Orders</NavLink>
            </li>
            {user?.role === 'admin' ? (
              <li>
                <NavLink to="/admin">Operator</NavLink>
              </li>
            ) : null}
            {user ? (
              <li className="nav-user">
                <span className="nav-name" data-testid="current-user">
                  {user.name || user.email}
                </span>
                <button
                  type="button"
                  className="link-button"
                  data-testid="logout-button"
                  onClick={async () => {
                    await logout();
                    navigate('/');
                  }}
                >
                  Log out
                </button>
              </li>
            ) : user === null ? (
              <>
                <li>
                  <NavLink to="/login">Log in</NavLink>
                </li>
                <li>
                  <NavLink to="/register">Sign up</NavLink>
                </li>
              </>
            ) : null}
          </ul>
        </nav>
      </div>
    </header>
  );
}

export function AppRoutes() {
  return (
    <Routes>
      <Route path="/" element={<ShopPage />} />
      <Route path="/products/:productId" element={<ProductPage />} />
      <Route path="/sales" element={<SalesPage />} />
      <Route path="/sales/:saleId" element={<SalePage />} />
      <Route path="/sales/:saleId/fairness" element={<FairnessPage />} />
      <Route path="/login" element={<LoginPage />} />
      <Route path="/register" element={<RegisterPage />} />
      <Route path="/check-email" element={<CheckEmailPage />} />
      <Route path="/verify-email" element={<VerifyEmailPage />} />
      <Route path="/dev/mailbox" element={<DevMailboxPage />} />
      <Route
        path="/tickets/:ticketId"
        element={
          <RequireAuth>
            <TicketPage />
          </RequireAuth>
        }
      />
      <Route
        path="/cart"
        element={
          <RequireAuth>
            <CartPage />
          </RequireAuth>
        }
      />
      <Route
        path="/orders"
        element={
          <RequireAuth>
            <OrdersPage />
          </RequireAuth>
        }
      />
      <Route
        path="/orders/:orderId"
        element={
          <RequireAuth>
            <OrderPage />
          </RequireAuth>
        }
      />
      <Route
        path="/admin"
        element={
          <RequireAuth admin>
            <AdminPage />
          </RequireAuth>
        }
      />
      <Route
        path="/admin/sales/:saleId"
        element={
          <RequireAuth admin>
            <AdminSalePage />
          </RequireAuth>
        }
      />
      <Route path="*" element={<NotFoundPage />} />
    </Routes>
  );
}

export function App() {
  return (
    <AuthProvider>
      <SessionWatch />
      <Header />
      <main id="main" tabIndex={-1}>
        <AppRoutes />
      </main>
    </AuthProvider>
  );
}
