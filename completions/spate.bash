# bash completion for spate(1) and spated(8); make install puts it in
# PREFIX/share/bash-completion/completions as both spate and spated.

# Function names from the server, quietly (nothing when it is not reachable).
_spate_functions()
{
    local url=() i
    for ((i = 1; i < ${#COMP_WORDS[@]} - 1; i++)); do
        [[ ${COMP_WORDS[i]} == --url ]] && url=(--url "${COMP_WORDS[i + 1]}")
    done
    timeout 2 "${COMP_WORDS[0]}" "${url[@]}" --json ls 2>/dev/null |
        grep -o '"name": *"[^"]*"' | sed 's/.*"\([^"]*\)"$/\1/'
}

_spate()
{
    local cur prev cmd sub i
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD - 1]}
    local commands="deploy config invoke ls status rm logs publish trigger topic dlq schedule source nodes help"

    # The command is the first word that is not a global option.
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
        --url | --cacert | --cert | --cert-key) ((i++)) ;;
        -*) ;;
        *)
            cmd=${COMP_WORDS[i]}
            sub=${COMP_WORDS[i + 1]}
            break
            ;;
        esac
    done

    case $prev in
    --url) return ;;
    --cacert | --cert | --cert-key)
        COMPREPLY=($(compgen -f -- "$cur"))
        return
        ;;
    --function)
        COMPREPLY=($(compgen -W "$(_spate_functions)" -- "$cur"))
        return
        ;;
    --env-file | --secret-file)
        COMPREPLY=($(compgen -f -- "$cur"))
        return
        ;;
    --runtime)
        COMPREPLY=($(compgen -W "native exec python3 nodejs" -- "$cur"))
        return
        ;;
    --handler | --min | --max | --timeout | --memory | --keep-alive | --queue | --env | --unset-env | --cpu | --tmp | --limit | \
        --secret | --since | --request | --instance | \
        --key | --key-field | --max-attempts | --dlq | --deadline | --max-concurrency | \
        --max-age | --max-bytes | --max-messages | --to | --payload | --tz)
        return
        ;;
    esac

    if [[ -z $cmd ]]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "--url --json --help --version" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$commands" -- "$cur"))
        fi
        return
    fi

    # A PAYLOAD of @FILE: complete the file.
    if [[ $cur == @* && ($cmd == invoke || $cmd == publish) ]]; then
        COMPREPLY=($(compgen -f -P @ -- "${cur#@}"))
        return
    fi

    local opts=""
    case $cmd in
    help)
        [[ $prev == help ]] && COMPREPLY=($(compgen -W "${commands% help}" -- "$cur"))
        return
        ;;
    deploy)
        opts="--runtime --handler --min --max --timeout --memory --keep-alive --queue --env --env-file --secret --secret-file --unset-env --clear-env --cpu --tmp --network --no-network --on-success --on-failure"
        # NAME, then FILE.
        if [[ $cur != -* && $prev != deploy ]]; then
            COMPREPLY=($(compgen -f -- "$cur"))
            return
        fi
        ;;
    config)
        opts="--min --max --timeout --memory --keep-alive --queue --env --env-file --secret --secret-file --unset-env --clear-env --cpu --tmp --network --no-network --on-success --on-failure"
        if [[ $prev == config ]]; then
            COMPREPLY=($(compgen -W "$(_spate_functions)" -- "$cur"))
            return
        fi
        ;;
    invoke | status | rm)
        [[ $cmd == rm ]] && opts="--force"
        [[ $cmd == invoke ]] && opts="--timeout --async"
        if [[ $prev == "$cmd" ]]; then
            COMPREPLY=($(compgen -W "$(_spate_functions)" -- "$cur"))
            return
        fi
        ;;
    logs)
        opts="--limit --since --request --instance --follow"
        if [[ $prev == logs ]]; then
            COMPREPLY=($(compgen -W "$(_spate_functions)" -- "$cur"))
            return
        fi
        ;;
    publish) opts="--key --key-field --lines" ;;
    trigger)
        if [[ $prev == trigger ]]; then
            COMPREPLY=($(compgen -W "add set ls rm" -- "$cur"))
            return
        fi
        [[ $sub == add ]] && opts="--max-attempts --dlq --ordered --deadline --max-concurrency"
        [[ $sub == set ]] && opts="--max-attempts --dlq --ordered --no-ordered --deadline --max-concurrency"
        ;;
    topic)
        if [[ $prev == topic ]]; then
            COMPREPLY=($(compgen -W "ls stats rm purge set" -- "$cur"))
            return
        fi
        [[ $sub == rm ]] && opts="--force"
        [[ $sub == set ]] && opts="--max-age --max-bytes --max-messages"
        ;;
    schedule)
        if [[ $prev == schedule ]]; then
            COMPREPLY=($(compgen -W "add ls status rm" -- "$cur"))
            return
        fi
        [[ $sub == add ]] && opts="--to --function --payload --tz"
        ;;
    source)
        if [[ $prev == source ]]; then
            COMPREPLY=($(compgen -W "add ls status rm" -- "$cur"))
            return
        fi
        [[ $sub == add ]] && opts="--to --key-field"
        ;;
    dlq)
        [[ $prev == dlq ]] && COMPREPLY=($(compgen -W "ls redrive" -- "$cur"))
        return
        ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts --url --json --cacert --cert --cert-key --help" -- "$cur"))
    fi
}
complete -F _spate spate

_spated()
{
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
    case $prev in
    --config | --token-file | --runner | --tls-cert | --tls-key | --tls-client-ca)
        COMPREPLY=($(compgen -f -- "$cur"))
        return
        ;;
    --data | --writable)
        COMPREPLY=($(compgen -d -- "$cur"))
        return
        ;;
    --log-level)
        COMPREPLY=($(compgen -W "debug info warn error" -- "$cur"))
        return
        ;;
    --log-format)
        COMPREPLY=($(compgen -W "text json" -- "$cur"))
        return
        ;;
    esac
    local opts
    opts=$("${COMP_WORDS[0]}" --help 2>/dev/null | grep -o -- '^  --[a-z-]*')
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}
complete -F _spated spated
