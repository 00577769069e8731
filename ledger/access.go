package ledger

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/eventstore"
	"github.com/payledger/payledger/ledger/staffkeys"
)

// Actor is who issues a command, as authenticated at the edge: a holder
// through a session (AccountID and SessionID), a staff key with its role
// (KeyID and Role), or nobody (the zero value, for the public routes).
// The ledger decides what each may do (Authorize), so every entry point
// shares one access table.
type Actor struct {
	AccountID string
	SessionID string
	KeyID     string
	Role      staffkeys.Role
}

// Holder reports whether the actor is an account holder's session.
func (a Actor) Holder() bool { return a.SessionID != "" }

// Staff reports whether the actor is a staff key.
func (a Actor) Staff() bool { return a.KeyID != "" }

// staff is what events record of a staff actor; identityCheck is the
// reference of the operator's identity check, where the command needs one.
func (a Actor) staff(identityCheck string) domain.Staff {
	// An identity check named by anyone but staff reaches the domain,
	// which refuses it rather than dropping it unnoticed.
	return domain.Staff{StaffKey: a.KeyID, IdentityCheck: strings.TrimSpace(identityCheck)}
}

// scope is the namespace of the actor's idempotency keys, so that one
// caller's key never replays another caller's request.
func (a Actor) scope() string {
	switch {
	case a.Holder():
		return "h:" + a.AccountID
	case a.Staff():
		return "k:" + a.KeyID
	}
	return "p:"
}

// Op names an operation for the access table.
type Op string

// The operations of the access table; the HTTP routes map onto them.
const (
	OpOpenAccount     Op = "open_account"
	OpViewAccount     Op = "view_account"
	OpEnrollFactor    Op = "enroll_factor"
	OpRevokeFactor    Op = "revoke_factor"
	OpReportLoss      Op = "report_credential_loss"
	OpResetCredential Op = "reset_credential"
	OpLogin           Op = "login"
	OpLogout          Op = "logout"
	OpBindBankAccount Op = "bind_bank_account"
	OpDeposit         Op = "deposit"
	OpInitiatePayment Op = "initiate_payment"
	OpConfirmPayment  Op = "confirm_payment"
	OpWithdraw        Op = "withdraw"
	OpAdjustLimit     Op = "adjust_limit"
	OpChangeIdentity  Op = "change_identity"
	OpChangePhone     Op = "change_phone"
	OpSuspend         Op = "suspend"
	OpReactivate      Op = "reactivate"
	OpClose           Op = "close"
	OpUnlock          Op = "unlock"
	OpReadBalance     Op = "read_balance"
	OpReadStatement   Op = "read_statement"
	OpReadOperations  Op = "read_operations"
	OpRegisterDevice  Op = "register_device"
	OpReadMetrics     Op = "read_metrics"
	OpRevokeDevice    Op = "revoke_device"

	OpReportLossCase     Op = "report_loss_case"
	OpViewLossCase       Op = "view_loss_case"
	OpInvestigateLoss    Op = "investigate_loss"
	OpDetermineLiability Op = "determine_liability"
	OpSettleLoss         Op = "settle_loss"
	OpCloseLossCase      Op = "close_loss_case"
	OpReadReserve        Op = "read_reserve"
	OpAdjustReserve      Op = "adjust_reserve"
	OpCloseDay           Op = "close_day"
	OpReadAnnualReport   Op = "read_annual_report"
	OpOpenDispute        Op = "open_dispute"
	OpViewDispute        Op = "view_dispute"
	OpHandleDispute      Op = "handle_dispute"
	OpWithdrawDispute    Op = "withdraw_dispute"
	OpListCases          Op = "list_cases"

	OpExportPersonalData Op = "export_personal_data"
	OpErasePersonalData  Op = "erase_personal_data"
)

// Rule says who may perform an operation: anyone (Public), the holder of
// the account it acts on (Holder), and staff of the listed roles.
type Rule struct {
	Public bool
	Holder bool
	Roles  []staffkeys.Role
}

var (
	operator   = staffkeys.RoleOperator
	funding    = staffkeys.RoleFunding
	finance    = staffkeys.RoleFinance
	compliance = staffkeys.RoleCompliance
	regulator  = staffkeys.RoleRegulator
	auditor    = staffkeys.RoleAuditor
)

// access is the one table of who may do what (R26). Only funding creates
// credits; the regulator's and finance's reads are reports, not accounts.
var access = map[Op]Rule{
	OpOpenAccount:     {Public: true, Roles: []staffkeys.Role{operator}},
	OpViewAccount:     {Holder: true, Roles: []staffkeys.Role{operator, compliance, auditor}},
	OpEnrollFactor:    {Holder: true, Roles: []staffkeys.Role{operator}},
	OpRevokeFactor:    {Holder: true},
	OpReportLoss:      {Holder: true, Roles: []staffkeys.Role{operator}},
	OpResetCredential: {Holder: true},
	OpLogin:           {Public: true, Holder: true},
	OpLogout:          {Holder: true},
	OpBindBankAccount: {Holder: true},
	OpDeposit:         {Roles: []staffkeys.Role{funding}},
	OpInitiatePayment: {Holder: true},
	OpConfirmPayment:  {Holder: true},
	OpWithdraw:        {Holder: true},
	OpAdjustLimit:     {Holder: true},
	OpChangeIdentity:  {Holder: true},
	OpChangePhone:     {Holder: true},
	OpSuspend:         {Holder: true, Roles: []staffkeys.Role{operator}},
	OpReactivate:      {Holder: true, Roles: []staffkeys.Role{operator}},
	OpClose:           {Holder: true, Roles: []staffkeys.Role{operator}},
	OpUnlock:          {Holder: true, Roles: []staffkeys.Role{operator}},
	OpReadBalance:     {Holder: true, Roles: []staffkeys.Role{operator, finance, compliance, auditor}},
	OpReadStatement:   {Holder: true, Roles: []staffkeys.Role{operator, compliance, auditor}},
	OpReadOperations:  {Holder: true, Roles: []staffkeys.Role{operator, compliance, auditor}},
	OpRegisterDevice:  {Holder: true},
	OpRevokeDevice:    {Holder: true, Roles: []staffkeys.Role{operator}},
	// Loss cases (Art. 37): the holder reports and follows their own;
	// compliance investigates and determines liability; finance moves the
	// money; either closes.
	OpReportLossCase:     {Holder: true},
	OpViewLossCase:       {Holder: true, Roles: []staffkeys.Role{finance, compliance, auditor}},
	OpInvestigateLoss:    {Roles: []staffkeys.Role{compliance}},
	OpDetermineLiability: {Roles: []staffkeys.Role{compliance}},
	OpSettleLoss:         {Roles: []staffkeys.Role{finance}},
	OpCloseLossCase:      {Roles: []staffkeys.Role{finance, compliance}},
	// The reserve and its closes are finance's; the annual report is the
	// regulator's (and finance's and the auditor's to check).
	OpReadReserve:      {Roles: []staffkeys.Role{finance, auditor}},
	OpAdjustReserve:    {Roles: []staffkeys.Role{finance}},
	OpCloseDay:         {Roles: []staffkeys.Role{finance}},
	OpReadAnnualReport: {Roles: []staffkeys.Role{regulator, finance, auditor}},
	// Disputes and complaints (Art. 41): the holder opens, follows and may
	// withdraw their own; the operators' desk and compliance assign,
	// answer and resolve them.
	OpOpenDispute:     {Holder: true},
	OpViewDispute:     {Holder: true, Roles: []staffkeys.Role{operator, compliance, auditor}},
	OpHandleDispute:   {Roles: []staffkeys.Role{operator, compliance}},
	OpWithdrawDispute: {Holder: true},
	// The staff's lists of open and overdue cases and disputes.
	OpListCases: {Roles: []staffkeys.Role{operator, finance, compliance, auditor}},
	// Personal data (R20): the holder exports their own; compliance
	// answers a former holder's request (a recorded read) and is the one
	// role that erases, once no retention rule needs the data.
	OpExportPersonalData: {Holder: true, Roles: []staffkeys.Role{compliance}},
	OpErasePersonalData:  {Roles: []staffkeys.Role{compliance}},
	// Operational metrics name no account: any staff key may read them.
	OpReadMetrics: {Roles: staffkeys.Roles()},
}

// Access returns the rule of op, for documentation and tests.
func Access(op Op) (Rule, bool) {
	r, ok := access[op]
	return r, ok
}

// Authorize decides whether by may perform op on accountID. No
// credentials where some are needed is unauthenticated; a holder acting on
// another account, whether it exists or not, or a staff role the rule does
// not list, is forbidden.
func Authorize(by Actor, op Op, accountID string) error {
	rule, ok := access[op]
	if !ok {
		return domain.Errorf(domain.CodeInternal, "operation %q has no access rule", op)
	}
	switch {
	case by.Holder():
		if !rule.Holder {
			return domain.Errorf(domain.CodeForbidden, "a holder's session may not %s", opText(op))
		}
		if accountID != "" && accountID != by.AccountID {
			return domain.Errorf(domain.CodeForbidden, "a session reaches only its own account")
		}
		return nil
	case by.Staff():
		if !slices.Contains(rule.Roles, by.Role) {
			return domain.Errorf(domain.CodeForbidden, "the %s role may not %s", by.Role, opText(op))
		}
		return nil
	case rule.Public:
		return nil
	}
	return domain.Errorf(domain.CodeUnauthenticated, "%s needs credentials: a session token from login or a staff API key, as Authorization: Bearer", opText(op))
}

func opText(op Op) string { return strings.ReplaceAll(string(op), "_", " ") }

// readOps are the reads whose staff use is recorded as an event.
var readOps = map[Op]string{
	OpViewAccount:    "account",
	OpReadBalance:    "balance",
	OpReadStatement:  "statement",
	OpReadOperations: "operations",
	// An export is every field of personal data the account's log holds.
	OpExportPersonalData: "personal data",
}

// AuthorizeRead authorises a read of accountID's data and, for staff,
// records the read in the key's stream (R26: every staff read of personal
// data is an event naming the key) before the data is served. A staff
// read of an account that does not exist is not_found and records nothing.
func (s *Service) AuthorizeRead(ctx context.Context, by Actor, op Op, accountID string) error {
	what, ok := readOps[op]
	if !ok {
		return domain.Errorf(domain.CodeInternal, "operation %q is not a read", op)
	}
	if err := Authorize(by, op, accountID); err != nil {
		return err
	}
	if !by.Staff() {
		return nil
	}
	if _, err := s.Currency(ctx, accountID); err != nil {
		return err
	}
	return s.recordStaffRead(ctx, by, accountID, what)
}

// recordStaffRead appends a staff key's read to the key's own stream
// before the data is served (R26); accountID is empty for a list.
func (s *Service) recordStaffRead(ctx context.Context, by Actor, accountID, what string) error {
	if !by.Staff() || by == Scheduler {
		return nil
	}
	data, err := s.encode([]domain.Event{domain.StaffRead{AccountID: accountID, Role: string(by.Role), What: what, Staff: by.staff("")}}, s.cfg.Clock(), Idem{}, "")
	if err != nil {
		return err
	}
	if _, err := s.cfg.Store.Append(ctx, domain.StaffStream(by.KeyID), eventstore.Any, data); err != nil {
		return fmt.Errorf("record the staff read of %s %s: %w", what, accountID, err)
	}
	return nil
}

// AuthorizeList authorises a staff list of cases or disputes (what) and
// records the read (R26): the lists name holders' accounts.
func (s *Service) AuthorizeList(ctx context.Context, by Actor, what string) error {
	if err := Authorize(by, OpListCases, ""); err != nil {
		return err
	}
	return s.recordStaffRead(ctx, by, "", what)
}

// StaffKeys is what the ledger needs of the staff key store.
type StaffKeys interface {
	Authenticate(ctx context.Context, token string) (staffkeys.Key, error)
}

// Session tokens are "pls_" + account id + "_" + session id + "_" + 32
// random bytes in unpadded base64url: the ids say where to look, the random
// part is the secret, and only the token's SHA-256 is in the log.
const (
	sessionPrefix = "pls_"
	sessionSecret = 32
	sessionLen    = len(sessionPrefix) + ulid.EncodedSize + 1 + ulid.EncodedSize + 1 + 43
	staffPrefix   = "plk_"
	maxTokenLen   = 300
)

// errBadCredentials is the one answer to every credential that is not
// valid, so that a caller learns nothing about which part was wrong.
var errBadCredentials = domain.Errorf(domain.CodeUnauthenticated,
	"the credentials are not valid: the session expired, ended or never existed, or the key is unknown or revoked; log in again or use a valid key")

// newSessionToken returns a fresh token and its SHA-256.
func (s *Service) newSessionToken(accountID, sessionID string) (string, []byte, error) {
	secret, err := s.random(sessionSecret)
	if err != nil {
		return "", nil, err
	}
	tok := sessionPrefix + accountID + "_" + sessionID + "_" + base64.RawURLEncoding.EncodeToString(secret)
	sum := sha256.Sum256([]byte(tok))
	return tok, sum[:], nil
}

// Authenticate turns a bearer token into an actor: a holder's session
// (its hash matches one the account's log holds, it has not reached its
// absolute expiry, and it was used within Policy.SessionIdle) or a staff
// key. Anything else is unauthenticated.
func (s *Service) Authenticate(ctx context.Context, token string) (Actor, error) {
	if len(token) > maxTokenLen {
		return Actor{}, errBadCredentials
	}
	switch {
	case strings.HasPrefix(token, staffPrefix):
		if s.cfg.StaffKeys == nil {
			return Actor{}, errBadCredentials
		}
		k, err := s.cfg.StaffKeys.Authenticate(ctx, token)
		if errors.Is(err, staffkeys.ErrInvalidKey) {
			return Actor{}, errBadCredentials
		}
		if errors.Is(eventstore.MarkStorageError(err), eventstore.ErrUnavailable) {
			// Every use of a key is recorded; while that cannot be
			// written, the key is not accepted.
			s.storage.failed(err)
			return Actor{}, domain.Errorf(domain.CodeStorageUnavailable,
				"staff key uses cannot be recorded now (their storage is full, read-only or failing); retry later")
		}
		if err != nil {
			return Actor{}, err
		}
		return Actor{KeyID: k.ID, Role: k.Role}, nil
	case strings.HasPrefix(token, sessionPrefix) && len(token) == sessionLen:
		return s.authenticateSession(ctx, token)
	}
	return Actor{}, errBadCredentials
}

func (s *Service) authenticateSession(ctx context.Context, token string) (Actor, error) {
	rest := token[len(sessionPrefix):]
	accountID, sessionID := rest[:ulid.EncodedSize], rest[ulid.EncodedSize+1:2*ulid.EncodedSize+1]
	if rest[ulid.EncodedSize] != '_' || rest[2*ulid.EncodedSize+1] != '_' {
		return Actor{}, errBadCredentials
	}
	if _, err := ulid.ParseStrict(accountID); err != nil {
		return Actor{}, errBadCredentials
	}
	ent := s.cache.lock(accountID)
	defer ent.mu.Unlock()
	if err := s.load(ctx, ent, accountID); err != nil {
		return Actor{}, err
	}
	if !ent.acct.Exists() {
		s.cache.drop(accountID, ent)
		return Actor{}, errBadCredentials
	}
	sess, ok := ent.acct.Session(sessionID)
	sum := sha256.Sum256([]byte(token))
	if !ok || subtle.ConstantTimeCompare(sum[:], sess.TokenHash) != 1 {
		return Actor{}, errBadCredentials
	}
	now := s.cfg.Clock()
	last, seen := s.lastUse.get(sessionID)
	if !seen {
		last = sess.Start
	}
	if !now.Before(sess.ExpiresAt) || (s.cfg.Policy.SessionIdle > 0 && now.Sub(last) > s.cfg.Policy.SessionIdle) {
		return Actor{}, errBadCredentials
	}
	s.lastUse.set(sessionID, now)
	return Actor{AccountID: accountID, SessionID: sessionID}, nil
}

// lastUse keeps when each session was last used, for the idle timeout,
// apart from the aggregate cache so that evicting an account does not end
// its holder's sessions. A session it does not know counts from its start.
// It is bounded: when full it forgets the sessions idle past the timeout,
// and if that is not enough, a tenth of the rest (which then count from
// their start, failing closed).
type lastUse struct {
	mu   sync.Mutex
	at   map[string]time.Time
	max  int
	idle time.Duration
}

const maxLastUse = 1 << 18

func newLastUse(idle time.Duration) *lastUse {
	return &lastUse{at: map[string]time.Time{}, max: maxLastUse, idle: idle}
}

func (l *lastUse) get(sessionID string) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.at[sessionID]
	return t, ok
}

func (l *lastUse) set(sessionID string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.at[sessionID]; !ok && len(l.at) >= l.max {
		for id, t := range l.at {
			if now.Sub(t) > l.idle {
				delete(l.at, id)
			}
		}
		for id := range l.at {
			if len(l.at) < l.max-l.max/10 {
				break
			}
			delete(l.at, id)
		}
	}
	l.at[sessionID] = now
}

// openKeys remembers which account each Idempotency-Key of an account
// opening chose, so that a retry reaches the same account although ids
// are random. It is bounded (maxOpenKeys, a day each) and per node: a
// retry after a restart opens a second, empty account, which costs
// nothing but an unused id.
type openKeys struct {
	mu    sync.Mutex
	ids   map[string]openKey
	order []string
}

type openKey struct {
	id string
	at time.Time
}

const (
	maxOpenKeys = 100000
	openKeyTTL  = 24 * time.Hour
)

func newOpenKeys() *openKeys { return &openKeys{ids: map[string]openKey{}} }

// claim returns the account id for key: the one chosen before, or a new
// one from newID, which it then remembers. Without a key it only returns
// a new id.
func (o *openKeys) claim(key string, keyed bool, newID func() string, now time.Time) string {
	if !keyed {
		return newID()
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if k, ok := o.ids[key]; ok && now.Sub(k.at) < openKeyTTL {
		return k.id
	}
	for len(o.order) > 0 && (len(o.ids) >= maxOpenKeys || now.Sub(o.ids[o.order[0]].at) >= openKeyTTL) {
		delete(o.ids, o.order[0])
		o.order = o.order[1:]
	}
	id := newID()
	if _, ok := o.ids[key]; !ok {
		o.order = append(o.order, key)
	}
	o.ids[key] = openKey{id: id, at: now}
	return id
}
