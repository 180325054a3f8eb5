import { useId, type InputHTMLAttributes, type ReactNode } from 'react';

interface FieldProps extends InputHTMLAttributes<HTMLInputElement> {
  label: string;
  name: string;
  /** Messages for this field from the API's `details.fields`. */
  errors?: string[];
  hint?: ReactNode;
}

/** A labelled input with its validation messages beside it (linked by aria-describedby). */
export function Field({ label, name, errors, hint, id, ...input }: FieldProps) {
  const generated = useId();
  const inputId = id ?? `${name}-${generated}`;
  const errorId = `${inputId}-errors`;
  const hintId = `${inputId}-hint`;
  const describedBy = [hint ? hintId : null, errors?.length ? errorId : null].filter(Boolean).join(' ');
  return (
    <div className={`field${errors?.length ? ' field-invalid' : ''}`}>
      <label htmlFor={inputId}>{label}</label>
      <input
        id={inputId}
        name={name}
        aria-invalid={errors?.length ? true : undefined}
        aria-describedby={describedBy || undefined}
        {...input}
      />
      {hint ? (
        <p className="field-hint" id={hintId}>
          {hint}
        </p>
      ) : null}
      {errors?.length ? (
        <ul className="field-errors" id={errorId} data-testid={`field-error-${name}`}>
          {errors.map((message) => (
            <li key={message}>{message}</li>
          ))}
        </ul>
      ) : null}
    </div>
  );
}

/** Field messages that belong to no input on the form, so none is lost. */
export function OtherFieldErrors({ errors, known }: { errors: Record<string, string[]>; known: string[] }) {
  const rest = Object.entries(errors).filter(([name]) => !known.includes(name));
  if (!rest.length) return null;
  return (
    <ul className="field-errors" data-testid="field-error-other">
      {rest.map(([name, messages]) => (
        <li key={name}>
          {name}: {messages.join(' ')}
        </li>
      ))}
    </ul>
  );
}
